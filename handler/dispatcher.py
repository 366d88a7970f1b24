"""The LiveKit side of a dispatch: AgentDispatchService calls with bounded time.

Errors are sorted into two kinds, because they decide the webhook's answer:
LiveKitUnavailable (timeouts, connection errors, 5xx, 429, 408) is worth a retry and
becomes a 503; LiveKitRejected (any other 4xx) will fail again and is recorded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .lazy_livekit import LazyLiveKitAPI
from .policy import PlannedDispatch
from .settings import Project, Settings
from .wire import JOB_ROOM_SID, JOB_SLOT

# 4xx answers that say nothing about whether the call took effect: Twirp's 408 is
# deadline_exceeded or canceled (a busy livekit-server answers DeleteRoom and friends
# with "request timed out"), 429 is "slow down". A CreateDispatch so answered may well
# have created its dispatch: the next owner looks in LiveKit before creating again.
RETRY_WORTHY = frozenset({408, 429})


class LiveKitError(Exception):
    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        # LiveKit's HTTP status; 0 when it never answered.
        self.status = status


class LiveKitUnavailable(LiveKitError):
    """LiveKit could not be reached or answered with an error a retry may fix."""


class LiveKitRejected(LiveKitError):
    """LiveKit refused the request; a retry would get the same answer."""


class LiveKitDispatcher:
    """One LiveKit project's server, called with that project's dispatch key."""

    def __init__(self, settings: Settings, project: Project | None = None) -> None:
        self._settings = settings
        self.project = project or settings.project()
        # No failover: the SDK's own replays CreateDispatch on a 5xx, which could put a
        # second agent in the room. Retries are the claim's job.
        self._client = LazyLiveKitAPI(self.project.url, self.project.api_key, self.project.api_secret,
                                      timeout_seconds=settings.livekit_timeout_seconds, failover=False)

    async def create(self, planned: PlannedDispatch) -> str:
        from livekit.protocol.agent_dispatch import CreateAgentDispatchRequest

        request = CreateAgentDispatchRequest(
            agent_name=planned.agent_name, room=planned.room_name, metadata=planned.job_metadata)
        dispatch = await self._call(self._client().agent_dispatch.create_dispatch(request))
        return str(dispatch.id)

    async def delete(self, dispatch_id: str, room_name: str) -> None:
        """Delete a dispatch; one that is already gone (with its room) is not an error.

        Any other refusal (a key LiveKit no longer accepts) is: the caller must not go on
        to create a second dispatch beside one it could not delete.
        """
        await self._call_unless_gone(self._client().agent_dispatch.delete_dispatch(dispatch_id, room_name))

    async def participants(self, room_name: str) -> list[Any]:
        from livekit.protocol.room import ListParticipantsRequest

        response = await self._call(self._client().room.list_participants(ListParticipantsRequest(room=room_name)))
        return list(response.participants)

    async def remove_participant(self, room_name: str, identity: str) -> None:
        """Disconnect a participant; one already gone is not an error."""
        from livekit.protocol.room import RoomParticipantIdentity

        await self._call_unless_gone(self._client().room.remove_participant(
            RoomParticipantIdentity(room=room_name, identity=identity)))

    async def rooms(self) -> list[Any]:
        from livekit.protocol.room import ListRoomsRequest

        return list((await self._call(self._client().room.list_rooms(ListRoomsRequest()))).rooms)

    async def room(self, room_name: str) -> Any | None:
        """The room's current session, or None if it is not open.

        ListParticipants can't tell: it answers an empty list for a room that doesn't exist.
        """
        from livekit.protocol.room import ListRoomsRequest

        rooms = (await self._call(self._client().room.list_rooms(ListRoomsRequest(names=[room_name])))).rooms
        return next((r for r in rooms if r.name == room_name), None)

    async def list(self, room_name: str) -> list[Any]:
        return list(await self._call(self._client().agent_dispatch.list_dispatch(room_name)))

    async def find(self, planned: PlannedDispatch, not_this: str = "") -> str | None:
        """The id of a dispatch an earlier attempt created for this slot in this room session, if LiveKit has one."""
        for dispatch in await self.list(planned.room_name):
            if dispatch.id != not_this and dispatch.agent_name == planned.agent_name and slot_of(
                    dispatch.metadata) == (planned.room_sid, planned.slot):
                return str(dispatch.id)
        return None

    async def dispatch_of_participant(self, room_name: str, agent_name: str, identity: str) -> str | None:
        """The dispatch whose job put the agent participant `identity` in the room."""
        for dispatch in await self.list(room_name):
            if dispatch.agent_name != agent_name:
                continue
            if any(job.state.participant_identity == identity for job in dispatch.state.jobs):
                return str(dispatch.id)
        return None

    async def _call_unless_gone(self, coro: Any) -> None:
        """A removal: what it removes being gone already (404) is its outcome, not an error."""
        try:
            await self._call(coro)
        except LiveKitRejected as exc:
            if exc.status != 404:
                raise

    async def _call(self, coro: Any) -> Any:
        # Imported here, not at the top: a process that never calls LiveKit never loads them
        # (the client that made `coro` has loaded both already).
        import aiohttp
        from livekit.api import TwirpError

        try:
            # aiohttp's timeout covers the request; this also bounds anything around it.
            return await asyncio.wait_for(coro, self._settings.livekit_timeout_seconds + 1)
        except TwirpError as exc:
            message = f"LiveKit {exc.code} (HTTP {exc.status}): {exc.message}"[:500]
            if exc.status >= 500 or exc.status in RETRY_WORTHY:
                raise LiveKitUnavailable(message, status=exc.status) from None
            raise LiveKitRejected(message, status=exc.status) from None
        except TimeoutError:
            timeout = self._settings.livekit_timeout_seconds
            raise LiveKitUnavailable(f"LiveKit did not answer within {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise LiveKitUnavailable(f"LiveKit unreachable: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


def slot_of(job_metadata: str) -> tuple[str, str] | None:
    """(room sid, slot) of a dispatch Switchboard made, from its job metadata; None for anyone else's."""
    try:
        data = json.loads(job_metadata)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get(JOB_SLOT), str):
        return None
    return str(data.get(JOB_ROOM_SID, "")), data[JOB_SLOT]
