"""How deploykit's containers run: the Docker CIS benchmark's runtime settings, as Docker SDK options.

* a read-only root filesystem (CIS 5.12), with tmpfs mounts only where the service must write. Found by
  running a model image read-only: BentoML creates ``$BENTOML_HOME`` (``/home/deploykit/bentoml``) at
  start and keeps its Prometheus multiprocess files there; ``/tmp`` is given for libraries that want a
  scratch file (it stayed empty in that run). Both are ``noexec,nosuid,nodev`` and size-capped.
* every Linux capability dropped (CIS 5.3) and ``no-new-privileges`` (CIS 5.25): the service binds an
  unprivileged port as a non-root user (uid 10001, as the image says; CIS 4.1);
* memory (CIS 5.10), CPU (5.11) and process-count (5.28) limits, so a flood of requests or a runaway
  model call degrades this container, not the host.
"""

from __future__ import annotations

import os

UID = 10001
BENTOML_HOME = "/home/deploykit/bentoml"
_TMPFS = "rw,noexec,nosuid,nodev,size={size}"
DEFAULTS = {"memory": "2g", "cpus": None, "pids": 512, "tmp": "64m"}
FRONT_DEFAULTS = {"memory": "256m", "cpus": 1.0, "pids": 128, "tmp": "16m"}


def writable(role: str, size: str) -> dict[str, str]:
    """The tmpfs mounts a container of ``role`` ("model" or "front") needs on its read-only filesystem."""
    mounts = {"/tmp": _TMPFS.format(size=size) + ",mode=1777"}
    if role == "model":
        mounts[BENTOML_HOME] = _TMPFS.format(size=size) + f",uid={UID},gid={UID},mode=0700"
    return mounts


def default_cpus(workers: int = 1) -> float:
    """One core per worker and one for the server's own threads, at least two, at most the host's."""
    return float(min(os.cpu_count() or 1, max(2, workers + 1)))


def run_options(resources: dict | None = None, *, role: str = "model", workers: int = 1) -> dict:
    """Keyword arguments for ``client.containers.run``: the hardening and the resource limits.

    ``resources`` may set ``memory`` (``"2g"``), ``cpus`` (``1.5``), ``pids`` (``512``) and ``tmp``
    (the size of each tmpfs, ``"64m"``).
    """
    limits = {**(FRONT_DEFAULTS if role == "front" else DEFAULTS), **(resources or {})}
    cpus = float(limits["cpus"]) if limits.get("cpus") else default_cpus(workers)
    return {
        "read_only": True,
        "tmpfs": writable(role, limits["tmp"]),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "user": f"{UID}:{UID}",
        "mem_limit": limits["memory"],
        "memswap_limit": limits["memory"],  # no swap beyond the memory limit
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": int(limits["pids"]),
    }
