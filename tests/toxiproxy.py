"""A small client for toxiproxy's HTTP API (the real proxy, started by infra/stack.py)."""

from __future__ import annotations

import httpx


class Toxiproxy:
    def __init__(self, api_port: int) -> None:
        self._api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)

    def proxy(self, name: str, listen_port: int, upstream_port: int) -> Proxy:
        self._api.post("/proxies", json={"name": name, "listen": f"127.0.0.1:{listen_port}",
                                         "upstream": f"127.0.0.1:{upstream_port}", "enabled": True}).raise_for_status()
        return Proxy(self._api, name)

    def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        self._api.post("/reset").raise_for_status()


class Proxy:
    def __init__(self, api: httpx.Client, name: str) -> None:
        self._api = api
        self.name = name

    def add(self, kind: str, stream: str = "downstream", **attributes: int) -> str:
        toxic = f"{kind}_{stream}"
        self._api.post(f"/proxies/{self.name}/toxics", json={
            "name": toxic, "type": kind, "stream": stream, "attributes": attributes}).raise_for_status()
        return toxic

    def remove(self, toxic: str) -> None:
        self._api.delete(f"/proxies/{self.name}/toxics/{toxic}").raise_for_status()

    def enabled(self, on: bool) -> None:
        self._api.post(f"/proxies/{self.name}", json={"enabled": on}).raise_for_status()
