"""The deployed configuration's secret half: one Secrets Manager secret, read once at start-up.

The secret holds a JSON object of the same variables the environment would:

    {"LIVEKIT_API_KEY": "...", "LIVEKIT_API_SECRET": "...",
     "SWITCHBOARD_WEBHOOK_KEYS": "oldkey:oldsecret,newkey:newsecret"}

Settings reads it through SecretSettingsSource when SWITCHBOARD_LIVEKIT_SECRET_ARN
is set, so every name, alias and parser in settings.py applies unchanged and a
plain environment variable still wins over the secret (handy for a one-off
override). Nothing here logs or echoes a value: errors name the secret and
AWS's error, never its content.

The call is synchronous botocore, not aioboto3: Settings is built before the
event loop exists, aiobotocore imports botocore anyway a moment later, and so
the read adds one HTTPS round trip and ~40 ms of client set-up to a cold start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from pydantic_settings import EnvSettingsSource

SECRET_ARN_FIELD = "livekit_secret_arn"


class SecretUnavailable(RuntimeError):
    """The secret could not be read or is not a JSON object of strings. The message is safe to log."""


def secret_region(secret_id: str) -> str | None:
    """The region inside a secret ARN; None for a bare name (botocore then resolves the region)."""
    parts = secret_id.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager":
        return parts[3] or None
    return None


@functools.lru_cache(maxsize=8)
def _fetch(secret_id: str) -> tuple[tuple[str, str], ...]:
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # Bounded like the DynamoDB client: a hung read would only eat Lambda's 10 s init.
    config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 3, "mode": "standard"})
    try:
        client = botocore.session.get_session().create_client(
            "secretsmanager", region_name=secret_region(secret_id), config=config)
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        # The request carries only the secret's id, so AWS's message cannot echo a value;
        # it says which role lacked which permission, the usual reason to be here.
        error = exc.response.get("Error", {})
        raise SecretUnavailable(f"cannot read secret {secret_id}: {error.get('Code', 'error')}: "
                                f"{error.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise SecretUnavailable(f"cannot read secret {secret_id}: {exc}") from None
    text = response.get("SecretString")
    if text is None:
        raise SecretUnavailable(f"secret {secret_id} has no SecretString (binary secrets are not supported)")
    try:
        data = json.loads(text)
    except ValueError:
        # json's message quotes no input, but say less anyway: this is a secret.
        raise SecretUnavailable(f"secret {secret_id} is not a JSON object") from None
    if not isinstance(data, dict):
        raise SecretUnavailable(f"secret {secret_id} is not a JSON object")
    return tuple((str(k), _as_env_text(v)) for k, v in data.items() if v is not None)


def _as_env_text(value: Any) -> str:
    # Environment values are strings; let a JSON object such as
    # {"SWITCHBOARD_WEBHOOK_KEYS": {"key": "secret"}} through as its JSON text.
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def forget_secrets() -> None:
    """Read every secret again when next asked: after a SnapStart restore (handler/snapstart.py)."""
    _fetch.cache_clear()


def read_secret(secret_id: str) -> dict[str, str]:
    """The secret's variables; Secrets Manager is asked once per process for each secret."""
    return dict(_fetch(secret_id))


class SecretSettingsSource(EnvSettingsSource):
    """Settings values from the secret named by `livekit_secret_arn`, read like environment variables."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Nothing yet: the ARN is known only once the sources before this one have run.
        return {}

    def __call__(self) -> dict[str, Any]:
        secret_id = self.current_state.get(SECRET_ARN_FIELD)
        if not secret_id:
            return {}
        self.env_vars = {(k if self.case_sensitive else k.lower()): v for k, v in read_secret(secret_id).items()
                         if not (self.env_ignore_empty and v == "")}
        return super().__call__()
