"""The control plane's handle on a deployment's front: its URL and its admin API.

The front itself runs elsewhere (a process or a container: :mod:`deploykit._front`); every target
reaches it the same way, over HTTP with the deployment's admin token, so the release steps never
depend on where it runs.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..exceptions import DeploymentError

ADMIN_HEADER = "x-deploykit-admin"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class FrontClient:
    """A deployment's front: ``url`` is what clients use; the admin API is reached at ``admin_url``."""

    def __init__(self, name: str, url: str, token: str, *, admin_url: str | None = None, target: str = "",
                 details: dict | None = None) -> None:
        self.name, self.url, self.token, self.target = name, url, token, target
        self.admin_url = admin_url or url
        self.details = details or {}  # what the target knows of it (a pid, a container)

    def call(self, method: str, what: str, payload: dict | None = None, *, timeout: float = 30.0) -> Any:
        """One admin call; raises DeploymentError when the front does not answer or refuses."""
        import httpx

        try:
            response = httpx.request(method, f"{self.admin_url}/_deploykit/{what}", json=payload,
                                     headers={ADMIN_HEADER: self.token}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise DeploymentError(f"the front of {self.name} at {self.admin_url} does not answer ({exc}); "
                                  f"`deploykit status {self.name}` shows its state", target=self.target) from None
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200:
            raise DeploymentError(f"the front of {self.name} refused {method} {what}: "
                                  f"{body.get('error', response.text[:200])}", target=self.target)
        return body

    def status(self, timeout: float = 5.0) -> dict:
        return self.call("GET", "status", timeout=timeout)

    def alive(self) -> bool:
        try:
            self.status(timeout=2.0)
            return True
        except DeploymentError:
            return False

    def routes(self) -> dict:
        return self.status()["routes"]

    def set_routes(self, routes: dict) -> dict:
        return self.call("PUT", "routes", routes)

    def drain(self, upstream: str, timeout: float) -> bool:
        """Wait until no request is in flight to ``upstream``; False if some still were after ``timeout``."""
        return bool(self.call("POST", "drain", {"upstream": upstream, "timeout": timeout}, timeout=timeout + 10)["drained"])

    def wait_ready(self, timeout: float, exited=None) -> None:
        """Wait until the front answers its admin API; ``exited()`` tells when waiting is pointless."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive():
                return
            if exited is not None and exited():
                break
            time.sleep(0.05)
        raise DeploymentError(f"the front of {self.name} did not start within {timeout:.0f} s", target=self.target)

    def __repr__(self) -> str:
        return f"<FrontClient {self.name} {self.url} ({self.target})>"
