"""Upstream names the front resolves to several addresses (a Swarm service's replicas): the resolver's
choices, and a real front forwarding to an upstream given by name. Replicas behind Swarm's DNS are in
tests/targets/test_swarm.py."""

from __future__ import annotations

import asyncio
import time

import httpx

from deploykit._front.resolve import Resolver
from tests.test_front import _table, _upstream, front  # noqa: F401 - the front fixture

NAME = "http://replicas.test:3000"


def _resolver(answers: dict) -> Resolver:
    async def lookup(host: str, port: int) -> list[str]:
        found = answers[host]
        if isinstance(found, Exception):
            raise found
        return found

    return Resolver(lookup)


def test_a_name_is_spread_over_its_addresses_and_a_failed_one_skipped():
    answers = {"replicas.test": ["10.0.1.7", "10.0.1.5", "10.0.1.7"]}
    resolver = _resolver(answers)
    assert resolver.pick(NAME) == NAME  # not resolved yet: the name itself
    asyncio.run(resolver.refresh({NAME, "http://127.0.0.1:8000"}))
    assert resolver.addresses == {NAME: ["http://10.0.1.5:3000", "http://10.0.1.7:3000"]}  # an address is used as it is
    assert {resolver.pick(NAME) for _ in range(4)} == {"http://10.0.1.5:3000", "http://10.0.1.7:3000"}
    resolver.failed("http://10.0.1.5:3000")
    assert {resolver.pick(NAME) for _ in range(4)} == {"http://10.0.1.7:3000"}  # skipped while it fails
    resolver.failed("http://10.0.1.7:3000")
    assert resolver.pick(NAME).startswith("http://10.0.1.")  # every one failed lately: one is tried anyway

    answers["replicas.test"] = OSError("temporary failure in name resolution")
    asyncio.run(resolver.refresh({NAME}))
    assert len(resolver.every(NAME)) == 2  # a DNS hiccup keeps the replicas that may still answer
    answers["replicas.test"] = ["10.0.1.9"]
    gone = asyncio.run(resolver.refresh({NAME}))
    assert gone == {"http://10.0.1.5:3000", "http://10.0.1.7:3000"} and resolver.every(NAME) == ["http://10.0.1.9:3000"]
    assert asyncio.run(resolver.refresh(set())) == {"http://10.0.1.9:3000"} and resolver.every(NAME) == [NAME]
    assert asyncio.run(resolver.now(NAME)) == ["http://10.0.1.9:3000"]  # no longer routed, still reachable: every replica


def test_the_front_resolves_an_upstream_given_by_name(front):
    server, url = _upstream("named")
    port = server.server_address[1]
    named = f"http://localhost:{port}"
    front.set_routes(_table("1", named))
    with httpx.Client(base_url=front.url, timeout=10) as client:
        answers = [client.post("/predict", json={"i": i}) for i in range(30)]
    assert [a.status_code for a in answers] == [200] * 30
    assert {a.json()["upstream"] for a in answers} == {"named"}
    deadline = time.monotonic() + 5
    while named not in front.status()["addresses"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"http://127.0.0.1:{port}" in front.status()["addresses"][named]
    server.shutdown()
