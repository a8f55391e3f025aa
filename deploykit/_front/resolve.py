"""Upstream names that stand for several replicas, resolved to their addresses again every second.

A Docker Swarm service in ``dnsrr`` endpoint mode answers ``tasks.<service>`` with the address of
each replica that passed its health check, and stops listing one as soon as Swarm takes it out of
service (a headless Kubernetes service does the same). So the front resolves every upstream given by
name, spreads that upstream's requests over its addresses in turn, and skips for a few seconds an
address that failed to answer (a killed replica, until DNS stops listing it). Until a name has been
resolved, or when it does not resolve, the name itself is used (resolved when a connection is made);
an upstream given as an IP address is used as it is.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import time
from typing import Awaitable, Callable
from urllib.parse import urlsplit

REFRESH_SECONDS = 1.0
QUARANTINE_SECONDS = 3.0

Lookup = Callable[[str, int], Awaitable[list[str]]]


async def lookup(host: str, port: int) -> list[str]:
    """The IP addresses ``host`` resolves to (the system's resolver: Docker's embedded DNS in a container)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


class Resolver:
    """The addresses behind each upstream name, and which of them to use next."""

    def __init__(self, resolve: Lookup = lookup) -> None:
        self._resolve = resolve
        self.addresses: dict[str, list[str]] = {}  # upstream → one URL per address, sorted
        self._turns: dict[str, itertools.cycle] = {}
        self._down: dict[str, float] = {}  # address URL → until when it is skipped

    def pick(self, upstream: str) -> str:
        """The address to send ``upstream``'s next request to: the next one in turn not skipped lately."""
        found = self.addresses.get(upstream)
        if not found:
            return upstream
        now = time.monotonic()
        for _ in range(len(found)):
            address = next(self._turns[upstream])
            if self._down.get(address, 0.0) <= now:
                return address
        return address  # every one failed lately: try anyway, it may be back

    def every(self, upstream: str) -> list[str]:
        """Every address of ``upstream`` (the upstream itself when it has none)."""
        return list(self.addresses.get(upstream) or [upstream])

    async def now(self, upstream: str) -> list[str]:
        """Every address ``upstream`` resolves to at this moment (what it was last seen to, on a lookup failure): to
        reach every replica of a version no longer routed to, which :meth:`refresh` has forgotten."""
        return await self._addresses(upstream) or self.every(upstream)

    def failed(self, address: str) -> None:
        """``address`` did not answer: skip it for a few seconds, while DNS still lists it."""
        self._down[address] = time.monotonic() + QUARANTINE_SECONDS

    async def refresh(self, upstreams: set[str]) -> set[str]:
        """Resolve ``upstreams`` again and forget the others; return the addresses no longer listed."""
        before = {a for found in self.addresses.values() for a in found}
        for upstream in upstreams:
            found = await self._addresses(upstream)
            if found is not None and found != self.addresses.get(upstream):
                self.addresses[upstream], self._turns[upstream] = found, itertools.cycle(found)
        for upstream in set(self.addresses) - upstreams:
            self.forget(upstream)
        now = time.monotonic()
        self._down = {a: until for a, until in self._down.items() if until > now}
        return before - {a for found in self.addresses.values() for a in found}

    def forget(self, upstream: str) -> None:
        self.addresses.pop(upstream, None)
        self._turns.pop(upstream, None)

    async def _addresses(self, upstream: str) -> list[str] | None:
        """Sorted address URLs of ``upstream``; None when it is an address, or does not resolve now (a
        DNS hiccup must not drop replicas that still answer: the previous answer stands)."""
        parts = urlsplit(upstream)
        if not parts.hostname or _is_address(parts.hostname):
            return None
        try:
            found = await self._resolve(parts.hostname, parts.port)
        except (OSError, UnicodeError):
            return None
        return sorted({_url(address, parts.port) for address in found}) or None
