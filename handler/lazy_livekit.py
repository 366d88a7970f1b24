"""A livekit.api.LiveKitAPI made on first use: the handler's LiveKitDispatcher's and the worker's job requests'.

Made on first use because its aiohttp session must be created inside the running event
loop, and because a process that never calls LiveKit should not pay for importing
livekit.api. Standard library only at import time, like handler/wire.py: the worker
image carries this file too (worker/Dockerfile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livekit.api import LiveKitAPI


class LazyLiveKitAPI:
    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout_seconds: float, failover: bool) -> None:
        # failover has no default: the SDK's own failover replays a request on a 5xx, which for
        # CreateDispatch could put a second agent in the room, so each caller says what it wants.
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout_seconds = timeout_seconds
        self._failover = failover
        self._api: LiveKitAPI | None = None

    def __call__(self) -> LiveKitAPI:
        if self._api is None:
            import aiohttp
            from livekit import api

            self._api = api.LiveKitAPI(self._url, self._api_key, self._api_secret,
                                       timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                                       failover=self._failover)
        return self._api

    async def aclose(self) -> None:
        """Close the client if one was made; the next call makes a new one."""
        if self._api is not None:
            api, self._api = self._api, None
            await api.aclose()
