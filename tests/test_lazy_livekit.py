"""handler/lazy_livekit.py: one LiveKit client per holder, made on first use, closed and forgotten."""

from __future__ import annotations

import pytest

from handler.lazy_livekit import LazyLiveKitAPI

pytestmark = pytest.mark.anyio


async def test_the_client_is_made_once_on_first_use_with_the_holders_bounds():
    lazy = LazyLiveKitAPI("http://127.0.0.1:1", "key", "secret", timeout_seconds=2.5, failover=False)
    assert lazy._api is None  # nothing made, no session opened, until a call needs it
    client = lazy()
    assert lazy() is client
    assert client._session.timeout.total == 2.5
    assert client.agent_dispatch._client._failover is False  # the SDK must not replay a CreateDispatch
    await lazy.aclose()
    assert client._session.closed and lazy._api is None
    assert lazy() is not client  # a call after close gets a fresh client
    await lazy.aclose()


async def test_closing_a_client_never_made_is_nothing():
    lazy = LazyLiveKitAPI("http://127.0.0.1:1", "key", "secret", timeout_seconds=1, failover=True)
    await lazy.aclose()
    assert lazy._api is None
