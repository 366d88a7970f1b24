"""Build and sign webhook bodies the way livekit-server does, for tests."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
from typing import Any

from livekit.api import AccessToken

from infra.stack import DEV_API_KEY, DEV_API_SECRET

KIND = {"standard": "STANDARD", "sip": "SIP", "agent": "AGENT", "ingress": "INGRESS"}


def sign(body: bytes, key: str = DEV_API_KEY, secret: str = DEV_API_SECRET,
         ttl: datetime.timedelta = datetime.timedelta(minutes=5)) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return AccessToken(key, secret).with_ttl(ttl).with_sha256(digest).to_jwt()


def event(kind: str, room_name: str, room_sid: str, metadata: str | dict | None = None, *,
          participant: dict[str, Any] | None = None, event_id: str | None = None) -> dict[str, Any]:
    if isinstance(metadata, dict):
        metadata = json.dumps(metadata)
    body: dict[str, Any] = {
        "event": kind,
        "id": event_id or f"EV_{uuid.uuid4().hex[:12]}",
        "createdAt": str(int(datetime.datetime.now().timestamp())),
        "room": {"sid": room_sid, "name": room_name, "metadata": metadata or ""},
    }
    if participant is not None:
        body["participant"] = participant
    return body


def participant(identity: str, kind: str = "standard", attributes: dict[str, str] | None = None) -> dict[str, Any]:
    now = datetime.datetime.now()
    return {"sid": f"PA_{uuid.uuid4().hex[:10]}", "identity": identity, "kind": KIND[kind],
            "attributes": attributes or {}, "joinedAt": str(int(now.timestamp())),
            "joinedAtMs": str(int(now.timestamp() * 1000))}


def signed_request(body: dict[str, Any] | bytes, **sign_kwargs: Any) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"Authorization": sign(raw, **sign_kwargs), "Content-Type": "application/webhook+json"}
