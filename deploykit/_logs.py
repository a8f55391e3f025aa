"""Following a log as it grows, for the targets: a file a process writes, or a stream of chunks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

POLL_SECONDS = 0.2


def follow_file(path: Path, tail: int, exited: Callable[[], int | None]) -> Iterator[str]:
    """Yield the last ``tail`` lines of ``path``, then each new line, until ``exited()`` says the writer ended."""
    with open(path, "rb") as log:
        earlier = log.read().decode(errors="replace").splitlines()  # the position is now where new lines start
        yield from earlier[-tail:] if tail else []
        pending = b""
        while True:
            chunk = log.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    yield pending.decode(errors="replace").rstrip("\n")
                    pending = b""
            elif exited() is not None:
                if pending:
                    yield pending.decode(errors="replace")
                return
            else:
                time.sleep(POLL_SECONDS)


def follow_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines from a stream of byte chunks (a container's log stream), until it ends."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
