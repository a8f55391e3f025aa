"""Base images: which one to build on, checking it, and making one from Debian packages without a registry.

The base image is, in order: the ``base_image`` argument, ``$DEPLOYKIT_BASE_IMAGE``, ``base_image`` in
the project config (``deploykit.toml``, or ``[tool.deploykit]`` in ``pyproject.toml``, in the current
folder or a parent), else ``python:<major>.<minor>-slim``. It must hold the notebook's Python minor
version, because the wheels are resolved for it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from .. import _paths
from ..exceptions import ConfigError, ImageBuildError
from .engine import client as docker_client

# Debian suites whose python3 has the given minor version.
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def python_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def default_base_image() -> str:
    return f"python:{python_minor()}-slim"


def project_config(start: Path | None = None) -> dict:
    """deploykit settings from ``deploykit.toml`` or ``pyproject.toml [tool.deploykit]``, nearest first."""
    folder = (start or Path.cwd()).resolve()
    for directory in (folder, *folder.parents):
        own = directory / "deploykit.toml"
        if own.is_file():
            return tomllib.loads(own.read_text())
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            tool = tomllib.loads(pyproject.read_text()).get("tool", {}).get("deploykit")
            if tool:
                return tool
    return {}


def resolve_base_image(base_image: str | None = None) -> str:
    return base_image or os.environ.get("DEPLOYKIT_BASE_IMAGE") or project_config().get("base_image") or default_base_image()


def check_base_image(name: str) -> dict:
    """Make sure ``name`` is present (pulling it if it can) and has the notebook's Python; return facts."""
    import docker

    client = docker_client()
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        try:
            image = client.images.pull(name)
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"base image {name!r} is not on this Docker engine and could not be pulled "
                f"({_short(exc)}). Build one from Debian packages with `deploykit base-image --tag {name}` "
                "(no registry needed), or point DEPLOYKIT_BASE_IMAGE (or base_image=...) at an image you have.",
                image=name,
            ) from None
    facts = _probe(client, image)
    if facts["python"] != python_minor():
        raise ImageBuildError(
            f"base image {name!r} has Python {facts['python']} but this notebook runs Python {python_minor()}; "
            f"the model's wheels are resolved for {python_minor()}. Use a base image with Python "
            f"{python_minor()} (e.g. python:{python_minor()}-slim, or `deploykit base-image`).",
            image=name,
        )
    return {"name": name, "id": image.id, **facts}


def _probe(client, image) -> dict:
    """Python version, libc and machine of an image, cached by image id."""
    cache = _paths.home() / "base-images.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if image.id in known:
        return known[image.id]
    try:
        out = _run_probe(client, image)
    except Exception as exc:
        raise ImageBuildError(
            f"could not run python3 in base image {image.tags or image.id}: {_short(exc)}; "
            "a base image needs python3 (with its venv module) on PATH",
            image=str(image.id),
        ) from None
    facts = json.loads(out.decode().strip().splitlines()[-1])
    known[image.id] = facts
    cache.write_text(json.dumps(known, indent=1))
    return facts


def _run_probe(client, image) -> bytes:
    """Copy :mod:`.probe` into a network-less container of ``image``, run it, return what it printed."""
    import io
    import tarfile

    from . import probe

    source = Path(probe.__file__).read_bytes()
    container = client.containers.create(image.id, ["python3", "-I", "/tmp/deploykit_probe.py"], network_disabled=True,
                                         environment={"PATH": PATH})
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("deploykit_probe.py")
            info.size, info.mode = len(source), 0o644
            tar.addfile(info, io.BytesIO(source))
        container.put_archive("/tmp", archive.getvalue())
        container.start()
        if container.wait(timeout=60)["StatusCode"] != 0:
            raise RuntimeError(container.logs().decode(errors="replace")[-300:])
        return container.logs(stdout=True, stderr=False)
    finally:
        container.remove(force=True)


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.splitlines()[0][:200]


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (so a proxy or local mirror is honoured)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb":
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


def build_base_image(tag: str | None = None, *, suite: str | None = None, mirror: str | None = None, verbose: bool = True) -> str:
    """Build a Python base image from Debian packages with debootstrap and import it; return its tag.

    Needs root and ``debootstrap`` (``apt-get install debootstrap``); reaches only the Debian mirror.
    """
    minor = python_minor()
    suite = suite or DEBIAN_SUITES.get(minor)
    if suite is None:
        raise ConfigError(f"no Debian suite ships Python {minor}; pass suite=... or use a python:{minor}-slim image")
    tag = tag or f"local/python:{minor}-{suite}"
    if shutil.which("debootstrap") is None:
        raise ConfigError("debootstrap is not installed: run `apt-get install -y debootstrap` (as root), then retry")
    if os.geteuid() != 0:
        raise ConfigError("building a base image with debootstrap needs root (it creates device files)")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="deploykit-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = [
            "debootstrap", "--variant=minbase", "--include=python3-minimal,python3-venv,ca-certificates",
            suite, str(rootfs), mirror,
        ]
        if verbose:
            print(f"debootstrap {suite} from {mirror} …", flush=True)
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"debootstrap failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}", image=tag)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = [f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]',
                   f'LABEL org.opencontainers.image.description="Python {minor} on Debian {suite}, built by deploykit"',
                   'LABEL ai.deploykit.role="base"']
        repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        docker_client().api.import_image(src=tar.stdout, repository=repository, tag=version, changes=changes, stream_src=True)
        tar.wait()
    if verbose:
        print(f"imported {tag} ({platform.machine()})", flush=True)
    return tag
