"""The handler with DynamoDB taken out: the ceiling for the ignored-event path, not a deployable app.

    python -m bench.nostore_app --port 38091

Everything the real handler does for an ignored event (read and verify the
body, parse it, decide, log) except the one write that records it, started the
way handler/cli.py starts the real one. The gap between this and the real
handler is what the DynamoDB call costs; the gap between this and
bench/bare_app.py is what verification, parsing and the decision cost.
"""

from __future__ import annotations

import argparse
from typing import Any

from handler.app import create_app
from handler.settings import Settings


class NoStore:
    """Only what an ignored event touches."""

    async def record_event(self, event_record: dict[str, Any]) -> None:
        return None


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(Settings(), store=NoStore())  # type: ignore[arg-type]
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
