"""A Secrets Manager endpoint on loopback, for tests of the secret wiring (no AWS account here).

It speaks the service's real wire protocol (JSON 1.1, X-Amz-Target
secretsmanager.GetSecretValue), so the handler's own botocore client talks to it
through AWS_ENDPOINT_URL_SECRETS_MANAGER exactly as it would talk to AWS, and it
records each request so a test can count the reads and check the SigV4 scope.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class SecretRequest:
    target: str
    secret_id: str
    authorization: str


@dataclass
class FakeSecretsManager:
    secrets: dict[str, str]
    requests: list[SecretRequest] = field(default_factory=list)
    url: str = ""

    def reads_of(self, secret_id: str) -> list[SecretRequest]:
        return [r for r in self.requests if r.secret_id == secret_id]


@contextmanager
def fake_secrets_manager(secrets: dict[str, dict[str, Any] | str]) -> Iterator[FakeSecretsManager]:
    """Serve `secrets` (ARN → JSON document or raw SecretString) until the block ends."""
    fake = FakeSecretsManager({arn: v if isinstance(v, str) else json.dumps(v) for arn, v in secrets.items()})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            secret_id = request.get("SecretId", "")
            target = self.headers.get("X-Amz-Target", "")
            fake.requests.append(SecretRequest(target, secret_id, self.headers.get("Authorization", "")))
            if target != "secretsmanager.GetSecretValue":
                self._answer(400, {"__type": "InvalidRequestException", "message": f"unexpected {target}"})
            elif secret_id not in fake.secrets:
                self._answer(400, {"__type": "ResourceNotFoundException",
                                   "message": "Secrets Manager can't find the specified secret."})
            else:
                self._answer(200, {"ARN": secret_id, "Name": secret_id.rsplit(":", 1)[-1],
                                   "SecretString": fake.secrets[secret_id], "VersionId": "v1",
                                   "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
