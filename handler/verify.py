"""webhook in → verified event.

LiveKit signs each webhook with a JWT in the Authorization header (the raw
token, no "Bearer"), issued by an API key and carrying the base64 sha256 of the
exact body. We pick the secret by the token's issuer, so several keys work at
once: key rotation, and several LiveKit projects feeding one deployment. The key
that signed a webhook is handed back with the event: it selects the project whose
LiveKit and records the webhook acts on (a key belongs to one project only).

The JWT itself is checked by livekit-api's TokenVerifier. We compare the body
hash here rather than through WebhookReceiver.receive, because that takes the
body as text: it cannot hash a body that is not valid UTF-8 as it was sent, and
it raises the same bare Exception for a forged body and for a malformed one,
which must get different answers (401 and 400).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import jwt
from google.protobuf.json_format import Parse, ParseError
from livekit.api import TokenVerifier
from livekit.protocol.webhook import WebhookEvent

ACCEPTED_CONTENT_TYPES = frozenset({"application/webhook+json", "application/json"})


class WebhookRejected(Exception):
    """The request is refused; `status` is the HTTP answer and the message is safe to show."""

    status = 400


class Unauthorized(WebhookRejected):
    status = 401


class PayloadTooLarge(WebhookRejected):
    status = 413


class UnsupportedMediaType(WebhookRejected):
    status = 415


class BodyTimeout(WebhookRejected):
    status = 408


class MalformedEvent(WebhookRejected):
    status = 400


def check_content_type(header: str | None) -> None:
    media_type = (header or "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {media_type or '(none)'!r} is not application/webhook+json or application/json")


class WebhookVerifier:
    def __init__(self, keys: dict[str, str]) -> None:
        self._verifiers = {key: TokenVerifier(key, secret) for key, secret in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._verifiers)

    def verify(self, body: bytes, authorization: str | None) -> WebhookEvent:
        return self.verify_signed(body, authorization)[0]

    def verify_signed(self, body: bytes, authorization: str | None) -> tuple[WebhookEvent, str]:
        """The event and the API key that signed it."""
        token = _token_of(authorization)
        key = _issuer(token)
        verifier = self._verifiers.get(key)
        if verifier is None:
            raise Unauthorized("token is signed with an unknown API key")
        try:
            claims = verifier.verify(token)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is invalid: {type(exc).__name__}") from None
        if not claims.sha256:
            raise Unauthorized("token carries no body hash")
        try:
            expected = base64.b64decode(claims.sha256, validate=True)
        except ValueError:
            raise Unauthorized("token's body hash is not base64") from None
        if not hmac.compare_digest(hashlib.sha256(body).digest(), expected):
            raise Unauthorized("body does not match the signed hash")
        return parse_event(body), key


def parse_event(body: bytes) -> WebhookEvent:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("body is not valid UTF-8") from None
    try:
        event = Parse(text, WebhookEvent(), ignore_unknown_fields=True)
    except (ParseError, RecursionError, ValueError) as exc:
        raise MalformedEvent(f"body is not a WebhookEvent: {str(exc)[:200]}") from None
    if not event.event:
        raise MalformedEvent("body is not a WebhookEvent: no event type")
    return event


def _token_of(authorization: str | None) -> str:
    token = (authorization or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise Unauthorized("missing Authorization token")
    return token


def _issuer(token: str) -> str:
    # Reading the unverified issuer only picks which secret to verify with;
    # TokenVerifier then checks the signature, expiry and issuer for real.
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
    except jwt.PyJWTError:
        raise Unauthorized("token is not a JWT") from None
    return issuer if isinstance(issuer, str) else ""
