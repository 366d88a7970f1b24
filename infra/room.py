"""Create a room with metadata on the local livekit-server, the way a backend would.

    uv run python -m infra.room ROOM_NAME '{"agents": [{"name": "driver"}]}'
"""

from __future__ import annotations

import asyncio
import os
import sys

from livekit import api

from .stack import DEV_API_KEY, DEV_API_SECRET, Ports


async def create_room(name: str, metadata: str, url: str | None = None) -> str:
    async with api.LiveKitAPI(url or os.environ.get("LIVEKIT_URL", Ports().livekit_url),
                              DEV_API_KEY, DEV_API_SECRET) as lk:
        room = await lk.room.create_room(api.CreateRoomRequest(name=name, metadata=metadata, empty_timeout=120))
        return room.sid


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(asyncio.run(create_room(sys.argv[1], sys.argv[2])))
