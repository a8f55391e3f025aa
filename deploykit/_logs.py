"""Following a deployment's log as it grows: a local service's log file, a container's log stream."""

from __future__ import annotations

import time
from typing import Any, Iterator

POLL_SECONDS = 0.2


def follow(handle: Any, tail: int = 10) -> Iterator[str]:
    """Yield the last ``tail`` lines of ``handle``'s log, then each new line, until the service stops."""
    if handle.target == "docker":
        return _follow_container(handle.container, tail)
    return _follow_file(handle, tail)


def _follow_file(handle: Any, tail: int) -> Iterator[str]:
    with open(handle.log_path, "rb") as log:
        earlier = log.read().decode(errors="replace").splitlines()  # and the file position is now where new lines start
        yield from earlier[-tail:] if tail else []
        pending = b""
        while True:
            chunk = log.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    yield pending.decode(errors="replace").rstrip("\n")
                    pending = b""
            elif handle.exited() is not None:
                if pending:
                    yield pending.decode(errors="replace")
                return
            else:
                time.sleep(POLL_SECONDS)


def _follow_container(container: Any, tail: int) -> Iterator[str]:
    pending = b""
    for chunk in container.logs(stream=True, follow=True, tail=tail):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
