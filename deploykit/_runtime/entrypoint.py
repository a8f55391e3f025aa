"""The image's entrypoint: ``batch IN OUT ...`` scores a file; anything else serves, as before.

``docker run IMAGE`` and ``docker run IMAGE serve ...`` exec ``bentoml serve`` with the given arguments,
so the server is PID 1 as without an entrypoint (signals reach it directly).
``docker run IMAGE batch /data/in.parquet /data/out.parquet`` runs :func:`deploykit_runtime.batch.main`.
Any other command (``python``, ``sh``) is executed as given, for debugging.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["batch"]:
        from .batch import main as batch_main

        return batch_main(argv[1:])
    if not argv or argv[0] == "serve":
        command = ["bentoml", "serve", *argv[1:]]
    else:
        command = argv
    os.execvp(command[0], command)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
