"""Building images with a real Docker engine, hermetically and cache-friendly.

Two images per model, so a new model version sends only its own files to the engine:

* ``deploykit/deps:<hash>``: the base image plus a virtualenv of the pinned lock, keyed on the hash of
  the lock, the base image and the install script; made once and shared by every model with that lock.
  The lock's wheels and uv are uploaded into a container of the base image that has no network, the
  script (``templates/docker/deps-install.sh.j2``) installs them and deletes them, and the container
  is committed: one layer, no wheels in it. (A multi-stage Dockerfile did the same with the classic
  builder, but paid a second copy and commit of the whole virtualenv for ``COPY --from``, and left
  the install stage behind as a dangling image of ~700 MB.)
* ``deploykit/<name>:<version>``: a Dockerfile FROM the deps image, then the service code, then the
  model, built by the classic builder with ``network_mode="none"``.

The classic builder commits one image per Dockerfile instruction, about 0.2 s each, and labels passed
to its API become one ``LABEL`` instruction each; so the model image puts its constant instructions
before the layers that change and writes all its labels in one ``LABEL`` instruction at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shlex
import shutil
import subprocess
import tarfile
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
FRONT_SOURCE = Path(__file__).resolve().parent.parent / "_front"  # the front's package, copied alone into its image
FRONT_REQUIREMENTS = ("uvloop", "httptools", "cryptography", "orjson")  # cryptography: the audit log signs its checkpoints; orjson: capture parses bodies 4x faster
INSTALLER = "uv==0.13.9"  # installs the lock inside the deps build; fetched into the wheelhouse like the lock
# The dependency image's configuration, set when its container is committed.
DEPS_CONFIG = (
    f"ENV PATH=/opt/venv/bin:{_base.PATH} LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 "
    "BENTOML_HOME=/home/deploykit/bentoml BENTOML_DO_NOT_TRACK=true",
    'CMD ["python3"]',
)


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


def _installer_paths() -> tuple[str, str]:
    """(wheel file pattern, path of the uv binary once the wheel is unpacked in /tmp/uv)."""
    name, version = INSTALLER.split("==")
    return f"{name}-{version}-*.whl", f"/tmp/uv/{name}-{version}.data/scripts/uv"


def deps_image_tag(lock: list[str], base: dict) -> tuple[str, str, str]:
    """(tag, key, install script) of the dependency image for ``lock`` on ``base``; the key hashes the
    lock, the base image, the script and the image's configuration."""
    uv_wheel, uv = _installer_paths()
    script = _templates.render("docker/deps-install.sh.j2", uv_wheel=uv_wheel, uv=uv, uid=UID,
                               deploykit_version=__version__)
    key = _hash("\n".join(sorted(lock)), base["id"], script, *DEPS_CONFIG)
    return f"{DEPS_REPOSITORY}:{key[:16]}", key, script


def ensure_deps_image(lock: list[str], base: dict, *, on_line: Printer, verbose: bool,
                      no_cache: bool = False) -> tuple[str, bool]:
    """The dependency image for ``lock`` on ``base``, made only if the engine does not have it yet
    (``no_cache`` is accepted for symmetry with :func:`build_image`: this image uses no build cache)."""
    import docker

    tag, key, script = deps_image_tag(lock, base)
    try:
        docker_client().images.get(tag)
        on_line(f"dependencies: reusing {tag}")
        return tag, True
    except docker.errors.ImageNotFound:
        pass
    platform = {"python": base["python"], "machine": base["machine"], "libc": base["libc"], "verbose": verbose}
    wheels = wheelhouse.ensure_wheels(lock, **platform)
    installer = wheelhouse.ensure_wheels([INSTALLER], **platform)
    on_line(f"dependencies: making {tag} from {len(wheels)} wheels (network off)")
    with tempfile.TemporaryFile(prefix="deploykit-deps-") as payload:
        with tarfile.open(fileobj=payload, mode="w") as tar:
            _add_text(tar, "deps/install.sh", script)
            _add_text(tar, "deps/requirements.lock", "\n".join(lock) + "\n")
            for wheel in wheels:
                tar.add(wheel, f"deps/wheels/{wheel.name}")
            for wheel in installer:
                tar.add(wheel, f"deps/tools/{wheel.name}")
        payload.seek(0)
        _install_and_commit(base["id"], tag, key, payload, on_line)
    return tag, False


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _install_and_commit(base_id: str, tag: str, key: str, payload, on_line: Printer) -> None:
    """Run the install script in a network-less container of the base image, then commit it as ``tag``.
    The container is removed whatever happens; an interrupt stops it."""
    client = docker_client()
    container = client.containers.create(
        base_id, ["sh", "/tmp/deps/install.sh"], network_disabled=True,
        environment={"PATH": _base.PATH, "LANG": "C.UTF-8"}, labels={f"{LABEL}.role": "deps-build"},
    )
    lines: list[str] = []
    try:
        container.put_archive("/tmp", payload)
        container.start()
        for line in _follow(container):
            lines.append(line)
            on_line(f"dependencies: {line}")
        status = container.wait()["StatusCode"]
        if status != 0:
            raise ImageBuildError(
                f"installing the dependencies of {tag} failed (exit {status}); last output:\n" + "\n".join(lines[-15:]),
                image=tag, logs="\n".join(lines),
            )
        on_line(f"dependencies: committing {tag}")
        repository, _, version = tag.rpartition(":")
        container.commit(repository=repository, tag=version, message=f"deploykit: the virtualenv of lock {key[:16]}",
                         changes=[*DEPS_CONFIG, f"LABEL {LABEL}.role=deps {LABEL}.lock.sha256={key}"])
    except KeyboardInterrupt:
        on_line(f"interrupted: {tag} was not made")
        raise
    finally:
        container.remove(force=True)


def _follow(container):
    """The container's output, line by line, until it exits."""
    pending = b""
    for chunk in container.logs(stream=True, follow=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.decode(errors="replace").rstrip() for line in complete if line.strip())
    if pending.strip():
        yield pending.decode(errors="replace").rstrip()


def git_commit(folder: Path | None = None) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or Path.cwd(), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_labels(pkg: Any, deps_tag: str) -> dict:
    m = pkg.manifest
    labels = {
        "org.opencontainers.image.title": m.name,
        "org.opencontainers.image.version": str(m.version),
        "org.opencontainers.image.created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "org.opencontainers.image.description": f"{m.estimator} served by deploykit",
        f"{LABEL}.role": "model",
        f"{LABEL}.model.name": m.name,
        f"{LABEL}.model.version": str(m.version),
        f"{LABEL}.model.sha256": m.model.sha256,
        f"{LABEL}.version": __version__,
        f"{LABEL}.deps": deps_tag,
        f"{LABEL}.package": str(pkg.path),
    }
    card = m.artifacts.get("card_json")
    if card:
        labels[f"{LABEL}.card.sha256"] = card.sha256
    commit = git_commit()
    if commit:
        labels["org.opencontainers.image.revision"] = commit
    return labels


def label_instruction(labels: dict) -> str:
    """One ``LABEL`` instruction carrying every label, each key and value shell-quoted."""
    pairs = [f"{shlex.quote(key)}={shlex.quote(' '.join(str(value).split()))}" for key, value in sorted(labels.items())]
    return "LABEL " + " \\\n      ".join(pairs)


def _model_context(pkg: Any, context: Path, deps_tag: str, labels: dict, trusted_keys: str = "") -> None:
    bento = pkg.bento_path
    shutil.copytree(bento / "src" / "deploykit_runtime", context / "code" / "deploykit_runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(bento, context / "bento", ignore=shutil.ignore_patterns("deploykit_runtime", "__pycache__"))
    (context / "Dockerfile").write_text(model_dockerfile(deps_tag, labels, trusted_keys))


def model_dockerfile(deps_tag: str, labels: dict, trusted_keys: str) -> str:
    """The model image's Dockerfile (linted by hadolint and checkov in the tests)."""
    return _templates.render("docker/Dockerfile.j2", deps_image=deps_tag, uid=UID, port=PORT, deploykit_version=__version__,
                             labels=label_instruction(labels), trusted_keys=shlex.quote(trusted_keys))


def front_dockerfile(deps_tag: str) -> str:
    """The front image's Dockerfile."""
    return _templates.render("docker/Dockerfile.front.j2", deps_image=deps_tag, uid=UID, deploykit_version=__version__)


def build_image(pkg: Any, *, base_image: str | None = None, tag: str | None = None, verbose: bool = True,
                on_line: Printer | None = None, no_cache: bool = False) -> Image:
    """Build the package's Docker image; see :meth:`deploykit.Package.build_image`.

    ``no_cache=True`` builds every layer afresh (the benchmark's cold build); a dependency image that
    already exists is still reused unless it was removed first.
    """
    from .._security.signing import trusted_env, verify_package

    started = time.perf_counter()
    emit = on_line or _printer(verbose)
    verify_package(pkg)  # build only what a trusted key signed
    base = _base.check_base_image(_base.resolve_base_image(base_image))
    emit(f"base image: {base['name']} (Python {base['python_full']}, {base['machine']}, glibc {base['libc']})")
    deps_tag, reused = ensure_deps_image(pkg.manifest.lock, base, on_line=emit, verbose=verbose, no_cache=no_cache)
    tag = tag or f"deploykit/{pkg.name}:{pkg.version}"
    with tempfile.TemporaryDirectory(prefix="deploykit-image-") as tmp:
        context = Path(tmp)
        _model_context(pkg, context, deps_tag, image_labels(pkg, deps_tag), trusted_env())
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
    sources = sorted(FRONT_SOURCE.glob("*.py"))
    dockerfile = front_dockerfile(deps_tag)
    tag = f"{FRONT_REPOSITORY}:{_hash(deps_tag, dockerfile, *(f'{p.name}:{p.read_text()}' for p in sources))[:16]}"
    try:
        docker_client().images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="deploykit-front-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        (context / "deploykit_front").mkdir()
        for path in sources:
            shutil.copy(path, context / "deploykit_front" / path.name)
        docker_build(context, tag, labels={f"{LABEL}.role": "front-image"}, on_line=on_line)
    return tag
