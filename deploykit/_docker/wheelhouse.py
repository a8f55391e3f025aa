"""The wheelhouse: every pinned wheel, resolved and downloaded on the host, cached across builds.

``pip download`` runs on the host, so the user's pip configuration, proxies and private indexes apply;
the image build itself never touches the network. Wheels are fetched for the image's Python and
platform, which may differ from the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import _paths
from ..exceptions import ImageBuildError


def wheelhouse_dir() -> Path:
    path = Path(os.environ.get("DEPLOYKIT_WHEELHOUSE") or _paths.home() / "wheelhouse")
    path.mkdir(parents=True, exist_ok=True)
    return path


def platform_tags(machine: str, libc: str) -> list[str]:
    """pip ``--platform`` values a glibc Linux image of this machine and libc version accepts."""
    major, minor = (int(x) for x in (libc or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {"2_17": "manylinux2014", "2_12": "manylinux2010", "2_5": "manylinux1"}
    tags += [f"{name}_{machine}" for key, name in legacy.items() if int(key.split("_")[1]) <= minor]
    return tags + [f"linux_{machine}"]


def supported_tags(python: str, machine: str, libc: str) -> set:
    from packaging import tags

    version = tuple(int(x) for x in python.split(".")[:2])
    interpreter = f"cp{version[0]}{version[1]}"
    platforms = platform_tags(machine, libc)
    supported = set(tags.cpython_tags(version, [interpreter, "abi3", "none"], platforms))
    supported |= set(tags.compatible_tags(version, interpreter, platforms))
    return supported


def _index(directory: Path) -> dict[tuple[str, str], list[Path]]:
    from packaging.utils import parse_wheel_filename

    found: dict[tuple[str, str], list[Path]] = {}
    for path in directory.glob("*.whl"):
        try:
            name, version, _, _ = parse_wheel_filename(path.name)
        except ValueError:
            continue
        found.setdefault((str(name), str(version)), []).append(path)
    return found


def _pick(paths: list[Path], supported: set) -> Path | None:
    from packaging.utils import parse_wheel_filename

    for path in paths:
        if parse_wheel_filename(path.name)[3] & supported:
            return path
    return None


def _key(requirement: str) -> tuple[str, str]:
    from packaging.utils import canonicalize_name, canonicalize_version

    name, version = requirement.split("==")
    return str(canonicalize_name(name)), str(canonicalize_version(version, strip_trailing_zero=False))


def ensure_wheels(lock: list[str], *, python: str, machine: str, libc: str, verbose: bool = True) -> list[Path]:
    """Return one compatible wheel per pinned requirement, downloading what the cache lacks."""
    house = wheelhouse_dir()
    supported = supported_tags(python, machine, libc)
    missing = [r for r in lock if _pick(_index(house).get(_key(r), []), supported) is None]
    if missing:
        if verbose:
            print(f"  downloading {len(missing)} wheels for Python {python} on {machine} into {house} …", flush=True)
        _download(missing, house, python, machine, libc)
    chosen, absent = [], []
    index = _index(house)
    for requirement in lock:
        path = _pick(index.get(_key(requirement), []), supported)
        (chosen if path else absent).append(path or requirement)
    if absent:
        raise ImageBuildError(
            f"no wheel for {', '.join(absent[:5])} fits Python {python} on {machine} (glibc {libc}); "
            "install a version that publishes wheels, or build one with `pip wheel` into "
            f"{house}"
        )
    return chosen


def _pip_download(requirements: list[str], house: Path, python: str, machine: str, libc: str) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(requirements) + "\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", str(house), "-r", handle.name]
    for tag in platform_tags(machine, libc):
        command += ["--platform", tag]
    try:
        return subprocess.run(command, capture_output=True, text=True)
    finally:
        os.unlink(handle.name)


def _download(requirements: list[str], house: Path, python: str, machine: str, libc: str) -> None:
    proc = _pip_download(requirements, house, python, machine, libc)
    if proc.returncode == 0:
        return
    # One requirement without a wheel fails the whole call: fetch one by one, building pure-Python
    # wheels from source distributions where that is all an index offers.
    for requirement in requirements:
        if _pip_download([requirement], house, python, machine, libc).returncode == 0:
            continue
        _build_pure_wheel(requirement, house, proc.stderr)


def _build_pure_wheel(requirement: str, house: Path, earlier_error: str) -> None:
    from packaging.utils import parse_wheel_filename

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp, requirement],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ImageBuildError(
                f"could not download or build a wheel for {requirement}: "
                f"{(proc.stderr or earlier_error).strip().splitlines()[-1:] or ['no output']}; check your "
                "pip configuration (index URL, proxy) reaches an index that has it"
            )
        tags = parse_wheel_filename(wheels[0].name)[3]
        if not any(t.abi == "none" and t.platform == "any" for t in tags):
            raise ImageBuildError(
                f"{requirement} has no wheel for the image's platform and builds a platform-specific wheel "
                "on this host; build it for the image's platform and place it in the wheelhouse"
            )
        shutil.move(str(wheels[0]), house / wheels[0].name)


def link_into(wheels: list[Path], destination: Path) -> None:
    """Place the wheels in a build context without copying gigabytes where a hard link will do."""
    destination.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        target = destination / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
