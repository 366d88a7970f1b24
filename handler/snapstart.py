"""What one running handler holds, and how it is renewed after a Lambda SnapStart restore.

Under SnapStart, Lambda initialises a published version once, snapshots its memory and
starts later instances from that snapshot. What the lifespan opened must not be shared
that way:
  - the DynamoDB client's and the LiveKit session's connections (aiohttp): their sockets
    and TLS sessions belong to the instance that took the snapshot;
  - the AWS credentials botocore resolved at init, inside those clients;
  - the LiveKit secret, read once at init: restored instances would otherwise keep the
    value of the day the version was published, through every key rotation;
  - the `random` module's state, the same in every instance restored from one snapshot.
So the clients close before the checkpoint, and after each restore the settings are read
again (environment and secret, as at a cold start), the verifier is rebuilt from the keys
they hold and the clients open anew. Lambda Web Adapter (v1.1.0+) calls the two hooks at
AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH and AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH; a
non-2xx answer fails that phase, and a restore must finish within Lambda's 10 s limit.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

from .aws_secrets import forget_secrets
from .claims import DispatchStore
from .contract import Routing
from .dispatcher import LiveKitDispatcher
from .pipeline import Pipeline, open_pipelines
from .settings import Settings
from .verify import WebhookVerifier


class Instance:
    """The settings, verifier and open pipelines (one per LiveKit project) of one handler process."""

    def __init__(self, settings: Settings, routing: Routing, *, store: DispatchStore | None = None,
                 dispatcher: LiveKitDispatcher | None = None,
                 renew_settings: Callable[[], Settings] = Settings) -> None:
        self.settings = settings
        self.verifier = WebhookVerifier(settings.signing_keys)
        self._routing = routing
        self._store, self._dispatcher = store, dispatcher
        self._renew_settings = renew_settings
        self._exits: contextlib.AsyncExitStack | None = None
        self._pipelines: dict[str, Pipeline] | None = None
        self.restores = 0

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        if self._pipelines is None:
            raise RuntimeError("the handler's clients are closed (between a SnapStart checkpoint and its restore)")
        return self._pipelines

    @property
    def pipeline(self) -> Pipeline:
        """The default project's (or the only project's) pipeline."""
        return self.pipelines[self.settings.project().name]

    def pipeline_for_key(self, key: str) -> Pipeline:
        """The pipeline of the project the signing key belongs to: its LiveKit, its records."""
        return self.pipelines[self.settings.project_of_key[key]]

    async def open(self) -> None:
        exits = contextlib.AsyncExitStack()
        self._pipelines = await exits.enter_async_context(open_pipelines(
            self.settings, routing=self._routing, store=self._store, livekit=self._dispatcher))
        self._exits = exits

    async def close(self) -> None:
        exits, self._exits, self._pipelines = self._exits, None, None
        if exits is not None:
            await exits.aclose()

    async def before_checkpoint(self) -> None:
        await self.close()

    async def after_restore(self) -> None:
        # Every instance restored from one snapshot would draw the same "random" numbers
        # (botocore's and the retries' jitter); ids come from os.urandom, which is not affected.
        random.seed()
        forget_secrets()
        settings = self._renew_settings()
        self.settings, self.verifier = settings, WebhookVerifier(settings.signing_keys)
        await self.close()
        await self.open()
        self.restores += 1
