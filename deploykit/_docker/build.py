"""Building images with the classic builder of a real Docker engine, hermetically and cache-friendly.

Two images per model, so a new model version sends only its own files to the engine:

* ``deploykit/deps:<hash>``: the base image plus a virtualenv of the pinned lock, keyed on the hash of
  the lock, the base image and the Dockerfile; built once and shared by every model with that lock.
* ``deploykit/<name>:<version>``: FROM the deps image, then the service code, then the model.

Every build runs with ``network_mode="none"``: nothing inside a build can reach the network.

The classic builder commits one image per Dockerfile instruction, about 0.2 s each, and labels passed
to its API become one ``LABEL`` instruction each; so the model image puts its constant instructions
before the layers that change and writes all its labels in one ``LABEL`` instruction at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import _templates
from .._version import __version__
from ..exceptions import ImageBuildError
from . import base as _base
from . import wheelhouse
from .engine import LABEL, client as docker_client

UID = 10001
PORT = 3000
DEPS_REPOSITORY = "deploykit/deps"
FRONT_REPOSITORY = "deploykit/front"
FRONT_REQUIREMENTS = ("uvicorn", "httpx", "uvloop", "httptools")
INSTALLER = "uv==0.13.9"  # installs the lock inside the deps build; fetched into the wheelhouse like the lock


@dataclass
class Image:
    """A built model image.

    Attributes
    ----------
    tag : str
        ``deploykit/<name>:<version>``.
    id : str
    size : int
        Bytes, as the engine reports it.
    labels : dict
        OCI and deploykit labels.
    deps_image : str
        The dependency image it is built on; ``deps_reused`` says whether that was already there.
    seconds : float
        Wall time of the whole build, wheel downloads included.
    """

    tag: str
    id: str
    size: int
    labels: dict
    deps_image: str
    deps_reused: bool
    base_image: str
    seconds: float
    steps: list = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (f"<Image {self.tag} · {self.size / 1e6:.0f} MB · built in {self.seconds:.1f} s · "
                f"deps {'reused' if self.deps_reused else 'built'} ({self.deps_image})>")

    def _repr_html_(self) -> str:
        return _templates.render("display/image.html.j2", img=self, css=_templates.read("display/style.css"))


Printer = Callable[[str], None]


def _printer(verbose: bool) -> Printer:
    def emit(line: str) -> None:
        if verbose:
            print(f"    {line}", flush=True)

    return emit


def docker_build(context: Path, tag: str, *, labels: dict, on_line: Printer, no_cache: bool = False) -> tuple[str, list[str]]:
    """Build ``context`` with the network off, streaming steps to ``on_line``; return (image id, lines)."""
    client = docker_client()
    lines: list[str] = []
    image_id = None
    stream = client.api.build(
        path=str(context), tag=tag, labels=labels or None, network_mode="none", rm=True, forcerm=True,
        nocache=no_cache, decode=True,
    )
    try:
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise ImageBuildError(
                    f"building {tag} failed: {detail.strip()}\nlast build output:\n" + "\n".join(lines[-15:]),
                    image=tag, logs="\n".join(lines),
                )
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            text = chunk.get("stream", "").rstrip()
            for line in filter(None, text.splitlines()):
                lines.append(line)
                if line.startswith(("Step ", " ---> Using cache", "Successfully")):
                    on_line(line)
    except KeyboardInterrupt:
        stream.close()  # closing the connection makes the engine cancel the build
        on_line(f"interrupted: {tag} was not built")
        raise
    if image_id is None:
        image_id = client.images.get(tag).id
    return image_id, lines


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


_STEP = re.compile(r"^Step \d+/\d+ : (\w+)", re.IGNORECASE)
_RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


def stage_results(lines: list[str]) -> list[str]:
    """The image id each stage but the last ended with, read from a classic builder's output."""
    results, last = [], None
    for line in lines:
        step, result = _STEP.match(line), _RESULT.match(line)
        if result:
            last = result.group(1)
        elif step and step.group(1).upper() == "FROM" and last is not None:
            results.append(last)
    return results


def discard_stages(lines: list[str], on_line: Printer) -> None:
    """Remove the untagged images the earlier stages of a build left behind (the deps build's install
    stage holds the wheels and a second copy of the virtualenv, about 700 MB that nothing uses: the
    deps image is itself the cache). An image something else still uses is left alone."""
    import docker

    client = docker_client()
    for image_id in stage_results(lines):
        try:
            if not client.images.get(image_id).tags:
                client.images.remove(image_id)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError:  # another build or container uses it
            on_line(f"kept build stage {image_id}: it is in use")


def _installer_paths() -> tuple[str, str]:
    """(wheel file pattern, path of the uv binary once the wheel is unpacked in /tmp/uv)."""
    name, version = INSTALLER.split("==")
    return f"{name}-{version}-*.whl", f"/tmp/uv/{name}-{version}.data/scripts/uv"


def deps_image_tag(lock: list[str], base: dict) -> tuple[str, str, str]:
    """(tag, key, Dockerfile) of the dependency image for ``lock`` on ``base``: the key hashes all three."""
    uv_wheel, uv = _installer_paths()
    dockerfile = _templates.render(
        "docker/Dockerfile.deps.j2", base_image=base["id"], path=_base.PATH, uid=UID, deploykit_version=__version__,
        uv_wheel=uv_wheel, uv=uv,
    )
    key = _hash("\n".join(sorted(lock)), base["id"], dockerfile)
    return f"{DEPS_REPOSITORY}:{key[:16]}", key, dockerfile


def ensure_deps_image(lock: list[str], base: dict, *, on_line: Printer, verbose: bool,
                      no_cache: bool = False) -> tuple[str, bool]:
    """The dependency image for ``lock`` on ``base``, built only if the engine does not have it yet."""
    import docker

    tag, key, dockerfile = deps_image_tag(lock, base)
    try:
        docker_client().images.get(tag)
        on_line(f"dependencies: reusing {tag}")
        return tag, True
    except docker.errors.ImageNotFound:
        pass
    platform = {"python": base["python"], "machine": base["machine"], "libc": base["libc"], "verbose": verbose}
    wheels = wheelhouse.ensure_wheels(lock, **platform)
    installer = wheelhouse.ensure_wheels([INSTALLER], **platform)
    with tempfile.TemporaryDirectory(prefix="deploykit-deps-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        (context / "requirements.lock").write_text("\n".join(lock) + "\n")
        wheelhouse.link_into(wheels, context / "wheels")
        wheelhouse.link_into(installer, context / "tools")
        on_line(f"dependencies: building {tag} from {len(wheels)} wheels (network off)")
        _, lines = docker_build(context, tag, labels={f"{LABEL}.role": "deps", f"{LABEL}.lock.sha256": key},
                                on_line=on_line, no_cache=no_cache)
    discard_stages(lines, on_line)
    return tag, False


def git_commit(folder: Path | None = None) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or Path.cwd(), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_labels(pkg: Any, deps_tag: str) -> dict:
    m = pkg.manifest
    labels = {
        "org.opencontainers.image.title": m["name"],
        "org.opencontainers.image.version": str(m["version"]),
        "org.opencontainers.image.created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "org.opencontainers.image.description": f"{m['estimator']} served by deploykit",
        f"{LABEL}.role": "model",
        f"{LABEL}.model.name": m["name"],
        f"{LABEL}.model.version": str(m["version"]),
        f"{LABEL}.model.sha256": m["artifacts"]["model"]["sha256"],
        f"{LABEL}.version": __version__,
        f"{LABEL}.deps": deps_tag,
        f"{LABEL}.package": str(pkg.path),
    }
    card = m.get("artifacts", {}).get("card_json")
    if card:
        labels[f"{LABEL}.card.sha256"] = card["sha256"]
    commit = git_commit()
    if commit:
        labels["org.opencontainers.image.revision"] = commit
    return labels


def label_instruction(labels: dict) -> str:
    """One ``LABEL`` instruction carrying every label, each key and value shell-quoted."""
    pairs = [f"{shlex.quote(key)}={shlex.quote(' '.join(str(value).split()))}" for key, value in sorted(labels.items())]
    return "LABEL " + " \\\n      ".join(pairs)


def _model_context(pkg: Any, context: Path, deps_tag: str, labels: dict) -> None:
    bento = Path(pkg.manifest["bento"]["path"])
    shutil.copytree(bento / "src" / "deploykit_runtime", context / "code" / "deploykit_runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(bento, context / "bento", ignore=shutil.ignore_patterns("deploykit_runtime", "__pycache__"))
    (context / "Dockerfile").write_text(_templates.render(
        "docker/Dockerfile.j2", deps_image=deps_tag, uid=UID, port=PORT, deploykit_version=__version__,
        labels=label_instruction(labels),
    ))


def build_image(pkg: Any, *, base_image: str | None = None, tag: str | None = None, verbose: bool = True,
                on_line: Printer | None = None, no_cache: bool = False) -> Image:
    """Build the package's Docker image; see :meth:`deploykit.Package.build_image`.

    ``no_cache=True`` builds every layer afresh (the benchmark's cold build); a dependency image that
    already exists is still reused unless it was removed first.
    """
    started = time.perf_counter()
    emit = on_line or _printer(verbose)
    base = _base.check_base_image(_base.resolve_base_image(base_image))
    emit(f"base image: {base['name']} (Python {base['python_full']}, {base['machine']}, glibc {base['libc']})")
    deps_tag, reused = ensure_deps_image(pkg.manifest["lock"], base, on_line=emit, verbose=verbose, no_cache=no_cache)
    tag = tag or f"deploykit/{pkg.name}:{pkg.version}"
    with tempfile.TemporaryDirectory(prefix="deploykit-image-") as tmp:
        context = Path(tmp)
        _model_context(pkg, context, deps_tag, image_labels(pkg, deps_tag))
        emit(f"model image: building {tag} (network off)")
        image_id, lines = docker_build(context, tag, labels={}, on_line=emit, no_cache=no_cache)
    image = docker_client().images.get(image_id)
    return Image(tag=tag, id=image_id, size=image.attrs["Size"], labels=image.labels, deps_image=deps_tag,
                 deps_reused=reused, base_image=base["name"], seconds=time.perf_counter() - started, steps=lines)


def front_image(*, base_image: str | None = None, on_line: Printer, verbose: bool) -> str:
    """The image of the stable front (a small HTTP forwarder), built once per base and front code."""
    import docker

    from .._capture import dependency_closure

    base = _base.check_base_image(_base.resolve_base_image(base_image))
    lock = [f"{name}=={version}" for name, version in dependency_closure(FRONT_REQUIREMENTS).items()]
    deps_tag, _ = ensure_deps_image(lock, base, on_line=on_line, verbose=verbose)
    source = (Path(__file__).parent / "front.py").read_text()
    dockerfile = _templates.render("docker/Dockerfile.front.j2", deps_image=deps_tag, uid=UID, deploykit_version=__version__)
    tag = f"{FRONT_REPOSITORY}:{_hash(deps_tag, source, dockerfile)[:16]}"
    try:
        docker_client().images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="deploykit-front-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        (context / "front.py").write_text(source)
        docker_build(context, tag, labels={f"{LABEL}.role": "front-image"}, on_line=on_line)
    return tag
