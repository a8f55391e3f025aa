"""Run the front of one deployment::

    python -I -m deploykit._front.serve --name churn --state-dir DIR --port 8080 [--host 0.0.0.0] [--supervise]
        [--audit-key KEY.pem]

The admin token comes from the environment (``DEPLOYKIT_ADMIN_TOKEN``), never the command line, which
other users of the machine can read. With ``--supervise`` (the local target) the front also starts
and watches the version processes. SIGTERM stops it: it stops accepting, answers what is in flight,
then stops the versions it supervises.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from .app import Front
from .server import Server
from .supervisor import Supervisor


def _log(message: str) -> None:
    print(f"deploykit front: {message}", file=sys.stderr, flush=True)


async def run(options: argparse.Namespace, token: str) -> int:
    supervisor = Supervisor(options.state_dir) if options.supervise else None
    front = Front(options.name, options.state_dir, token, supervisor, audit_key=options.audit_key)
    if supervisor is not None:
        supervisor.front = front
    server = Server(front.handle, max_body=front.max_body, log=_log)
    try:
        await server.start(options.host, options.port)
    except OSError as exc:
        _log(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}")
        return 2
    _log(f"{options.name} listening on {options.host}:{options.port}")
    front.start_background()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if supervisor is not None:
        watcher = asyncio.ensure_future(supervisor.watch())
        asyncio.ensure_future(_relay(supervisor.shutdown, stop))
    await stop.wait()
    _log("stopping: answering the requests in flight")
    await server.stop()
    if supervisor is not None:
        supervisor.shutdown.set()
        await supervisor.stop_all()
        watcher.cancel()
    front.close()
    _log("stopped")
    return 0


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploykit._front.serve")
    parser.add_argument("--name", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--supervise", action="store_true")
    parser.add_argument("--audit-key", help="the Ed25519 key that signs the audit log's checkpoints (outside --state-dir)")
    options = parser.parse_args(argv)
    token = os.environ.pop("DEPLOYKIT_ADMIN_TOKEN", "")
    if not token:
        _log("DEPLOYKIT_ADMIN_TOKEN is not set")
        return 2
    os.makedirs(options.state_dir, exist_ok=True)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.run(run(options, token))
    return uvloop.run(run(options, token))


if __name__ == "__main__":
    raise SystemExit(main())
