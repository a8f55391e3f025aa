"""``bentoml containerize`` made to work offline, for the image benchmark (``bench_images.py``).

BentoML 1.4.40 regenerates the bento's Dockerfile when it containerizes. Offline, three of its steps
reach the network; each gets the smallest change that keeps BentoML's own Dockerfile and builder:

1. ``FROM python:3.11-slim``: no registry here. The bento's ``image.base_image`` (what a user sets
   with ``bentoml.images.Image(base_image=...)``) points at a local image built FROM the same base
   image deploykit uses, with what containerize's Dockerfile installs already in it: the Debian
   packages of its ``apt-get install`` line (ca-certificates gnupg2 bash build-essential git) and
   uv 0.13.4 (the version its Dockerfile pins; with it present, the ``pip install uv`` step is
   skipped). The image's apt source list is emptied, so ``apt-get update`` finds nothing to fetch
   and ``apt-get install`` finds everything installed. Those packages stay in containerize's image
   (as they would online), but downloading and installing them is not counted in its build time.
2. ``uv pip install -r requirements.txt`` resolves against PyPI, which containers cannot reach. The
   bento's ``envs`` (a user sets them in bentofile.yaml) add ``UV_INDEX_URL``, pointing uv at a
   PEP 503 index served from the host's wheelhouse, holding exactly the wheels deploykit installs:
   the closest offline equivalent of a package mirror. The wheels do not enter the image.
3. The default buildx/BuildKit path: ``DOCKER_BUILDKIT=0`` with ``--backend docker`` (the classic
   builder; there is no buildx here).

Run as a script, it is the child that times one ``bentoml.container.build`` call (the function
``bentoml containerize`` calls) in its own ``BENTOML_HOME`` and prints one JSON line::

    BENTOML_HOME=... python benchmarks/bench_images_containerize.py BENTO_TAG IMAGE_TAG LABEL [--no-cache]
"""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

UV_VERSION = "0.13.4"  # the version BentoML 1.4.40's Dockerfile installs (bentoml/_internal/container/frontend)
APT_PACKAGES = "ca-certificates gnupg2 bash build-essential git"  # its default image.commands
BASE_REPOSITORY = "deploykit-bench/containerize-base"
_MARK = "BENCH_RESULT "

BASE_DOCKERFILE = """\
# The stand-in for python:3.11-slim that bentoml containerize builds FROM in the image benchmark: the
# benchmark's base image plus what containerize's Dockerfile would download (see bench_images_containerize.py).
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends --allow-remove-essential {packages} \\
 && rm -rf /var/lib/apt/lists/* && : > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/*
COPY uv /usr/local/bin/uv
"""


def base_image(client, base: str, label: dict, log) -> tuple[str, float | None]:
    """The containerize base image for ``base``, built once (keyed on the base image id and uv version)."""
    import docker

    key = hashlib.sha256(f"{client.images.get(base).id}\0{UV_VERSION}\0{BASE_DOCKERFILE}".encode()).hexdigest()[:12]
    tag = f"{BASE_REPOSITORY}:{key}"
    try:
        client.images.get(tag)
        return tag, None
    except docker.errors.ImageNotFound:
        pass
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-images-base-") as tmp:
        context = Path(tmp)
        (context / "uv").write_bytes(_uv_binary(context))
        (context / "uv").chmod(0o755)
        (context / "Dockerfile").write_text(BASE_DOCKERFILE.format(base=base, packages=APT_PACKAGES))
        log(f"preparing {tag}: {APT_PACKAGES} from the Debian mirror, uv {UV_VERSION} (once; kept)")
        # apt needs the network here (the Debian mirror is plain HTTP); the timed builds do not.
        client.images.build(path=str(context), tag=tag, labels=label, rm=True, forcerm=True)
    return tag, time.perf_counter() - started


def _uv_binary(folder: Path) -> bytes:
    """uv's executable, from its wheel downloaded on the host (pip honours the host's configuration)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "-d", str(folder), f"uv=={UV_VERSION}"],
        check=True, capture_output=True,
    )
    wheel = next(folder.glob(f"uv-{UV_VERSION}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"uv-{UV_VERSION}.data/scripts/uv")


class WheelIndex:
    """A PEP 503 index of the given wheels, served over HTTP on ``host`` (the Docker bridge gateway)."""

    def __init__(self, wheels: list[Path], host: str) -> None:
        from packaging.utils import parse_wheel_filename

        self.root = Path(tempfile.mkdtemp(prefix="bench-images-index-"))
        self.requests = 0
        projects: dict[str, list[str]] = {}
        (self.root / "files").mkdir()
        for wheel in wheels:
            os.symlink(wheel, self.root / "files" / wheel.name)
            projects.setdefault(str(parse_wheel_filename(wheel.name)[0]), []).append(wheel.name)
        for project, names in projects.items():
            page = self.root / "simple" / project
            page.mkdir(parents=True)
            links = "".join(f'<a href="../../files/{html.escape(n)}">{html.escape(n)}</a>\n' for n in names)
            (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(index.root), **kwargs)

            def log_message(self, *args) -> None:
                index.requests += 1

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):  # uv drops a download it no longer needs
                    super().handle_error(request, client_address)

        self.server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def copy_bento(source: Path, store: Path, base: str, index_url: str) -> Path:
    """Copy a bento into another BentoML store and point its image at ``base`` and ``index_url``."""
    import yaml

    target = store / "bentos" / source.parent.name / source.name
    shutil.copytree(source, target)
    info = yaml.safe_load((target / "bento.yaml").read_text())
    info["image"]["base_image"] = base
    info["envs"] = [{"name": "UV_INDEX_URL", "value": index_url}]
    (target / "bento.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    return target


def containerize(bento_tag: str, image_tag: str, label: dict, store: Path, *, no_cache: bool, log_file: Path) -> dict:
    """Run the child below in ``store``; return its JSON (``seconds`` of the build call, ``wall`` of the process)."""
    env = {**os.environ, "BENTOML_HOME": str(store), "DOCKER_BUILDKIT": "0", "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, __file__, bento_tag, image_tag, json.dumps(label)] + (["--no-cache"] if no_cache else [])
    started = time.perf_counter()
    with open(log_file, "a") as log:
        proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bentoml containerize {bento_tag} failed; see {log_file}:\n{log_file.read_text()[-3000:]}")
    return {**json.loads(lines[-1][len(_MARK):]), "wall": wall}


def _child(bento_tag: str, image_tag: str, label: str, no_cache: bool) -> None:
    import logging

    import bentoml

    # the builder's lines, each stamped with its time, into the log file
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(created).3f %(message)s")
    options = {"label": json.loads(label)} | ({"no_cache": True} if no_cache else {})
    started = time.perf_counter()
    bentoml.container.build(bento_tag, backend="docker", image_tag=(image_tag,), **options)
    seconds = time.perf_counter() - started
    built = subprocess.run(["docker", "image", "inspect", image_tag], capture_output=True).returncode == 0
    print(_MARK + json.dumps({"seconds": seconds, "built": built}), flush=True)
    sys.exit(0 if built else 1)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], "--no-cache" in sys.argv[4:])
