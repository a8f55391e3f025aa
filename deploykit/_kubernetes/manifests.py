"""``deploykit.manifests``: a package's Kubernetes (or KServe) manifests, rendered from templates.

The image is the one :meth:`deploykit.Package.build_image` makes (``bentoml serve`` on port 3000 as uid
10001, ``/livez`` and ``/readyz`` on the same port). Every value a user can set is in :class:`Settings`;
the templates only lay them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import _templates
from .._version import __version__
from ..exceptions import ConfigError

KINDS = {
    "kubernetes": ("deployment", "service", "poddisruptionbudget", "horizontalpodautoscaler", "ingress"),
    "kserve": ("inferenceservice",),
}
# BentoML writes under BENTOML_HOME and Python and BentoML's metrics under /tmp; with a read-only root
# filesystem these are the only writable places, each an emptyDir.
SCRATCH = ({"name": "tmp", "path": "/tmp", "size": "256Mi"},
           {"name": "bentoml-home", "path": "/home/deploykit/bentoml", "size": "256Mi"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Settings:
    """Everything the manifests say; the defaults suit one small tabular model per pod."""

    name: str
    version: str
    image: str
    model_sha256: str = ""
    namespace: str | None = None
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 6
    target_cpu: int = 70
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    workers: int = 1
    port: int = 3000
    service_port: int = 80
    uid: int = 10001
    ingress_host: str | None = None
    ingress_class: str | None = None
    kserve_mode: str = "RawDeployment"
    progress_deadline: int = 600
    startup_failure_threshold: int = 90  # 2 s apart: a model has 3 minutes to load
    scratch: tuple = field(default=SCRATCH)

    @property
    def app(self) -> str:
        """The object name: the package name as a DNS label (``_`` is not allowed there)."""
        return self.name.replace("_", "-")

    def check(self) -> Settings:
        try:
            from kubernetes.utils import parse_quantity
        except ImportError:
            raise ConfigError("Kubernetes manifests need the kubernetes client: pip install 'deploykit[kubernetes]'") from None

        if not _DNS_LABEL.match(self.app):
            raise ConfigError(f"{self.name!r} does not make a Kubernetes name ({self.app!r}): use lowercase letters, digits and -")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"image {self.image!r} is not an image reference; pass image='REGISTRY/NAME:TAG'")
        for key in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
            try:
                parse_quantity(getattr(self, key))
            except ValueError:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not a Kubernetes quantity; "
                                  "write it like '500m', '2', '512Mi' or '2Gi'") from None
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(f"min_replicas={self.min_replicas} and max_replicas={self.max_replicas}: "
                              "need 1 <= min_replicas <= max_replicas")
        if self.kserve_mode not in ("RawDeployment", "Serverless"):
            raise ConfigError(f"kserve_mode={self.kserve_mode!r}: use 'RawDeployment' or 'Serverless'")
        return self


def settings_for(pkg: Any, *, image: str, **options) -> Settings:
    """Settings for a package; ``options`` are :class:`Settings` fields (``replicas``, ``namespace``, ...)."""
    known = {f.name for f in fields(Settings)} - {"name", "version", "image", "model_sha256", "scratch"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown manifest option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    options = {k: v for k, v in options.items() if v is not None}
    if "replicas" in options and "min_replicas" not in options:  # the autoscaler must not undo replicas=N
        options["min_replicas"] = options["replicas"]
        options.setdefault("max_replicas", max(options["replicas"], Settings.max_replicas))
    base = Settings(name=pkg.name, version=str(pkg.version), image=image,
                    model_sha256=pkg.manifest.model.sha256)
    return replace(base, **options).check()


def render(settings: Settings, kind: str = "kubernetes") -> dict[str, str]:
    """The YAML text of each manifest, by file name (``deployment.yaml``, ...)."""
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}: use one of {', '.join(KINDS)}")
    out = {}
    for stem in KINDS[kind]:
        if stem == "ingress" and not settings.ingress_host:
            continue  # an Ingress only when a host is given
        out[f"{stem}.yaml"] = _templates.render(f"kubernetes/{stem}.yaml.j2", s=settings,
                                                deploykit_version=__version__)
    return out


def documents(settings: Settings, kind: str = "kubernetes") -> list[dict]:
    """The manifests as dicts, in the order they are applied."""
    import yaml

    return [yaml.safe_load(text) for text in render(settings, kind).values()]


def write(settings: Settings, kind: str, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render(settings, kind).items():
        path = out / filename
        path.write_text(text)
        written.append(path)
    return written


def manifests(name_or_package: Any, *, kind: str = "kubernetes", image: str, out: str | Path | None = None,
              version: str | None = None, **options) -> list[Path]:
    """Write a package's Kubernetes or KServe manifests into a folder.

    Parameters
    ----------
    name_or_package : str, Path or Package
        A :class:`~deploykit.Package`, or a saved package's name (newest version) or folder.
    kind : {"kubernetes", "kserve"}
        ``"kubernetes"``: a Deployment (probes on ``/livez`` and ``/readyz``, requests and limits, non-root,
        read-only root filesystem, no privilege escalation, every capability dropped), a Service, a
        PodDisruptionBudget, a HorizontalPodAutoscaler, and an Ingress when ``ingress_host`` is given.
        ``"kserve"``: one KServe ``InferenceService`` with the same container as a custom predictor.
    image : str
        The image reference the cluster pulls, ``REGISTRY/NAME:TAG``; build it with
        ``pkg.build_image(tag=...)`` and push it where the cluster can pull it.
    out : str or Path, optional
        The folder to write into; default ``./<name>-<kind>/``.
    version : str, optional
        The package version when ``name_or_package`` is a name (default: the newest).
    **options
        :class:`deploykit._kubernetes.manifests.Settings` fields: ``namespace``, ``replicas``,
        ``min_replicas``, ``max_replicas``, ``target_cpu``, ``cpu_request``, ``memory_request``,
        ``cpu_limit``, ``memory_limit``, ``workers``, ``ingress_host``, ``ingress_class``, ``kserve_mode``.

    Returns
    -------
    list of Path
        The files written, in the order to apply them.

    Examples
    --------
    >>> deploykit.manifests("churn", kind="kubernetes", image="registry.example.com/churn:3",
    ...                     out="k8s/", replicas=3)                               # doctest: +SKIP
    [PosixPath('k8s/deployment.yaml'), PosixPath('k8s/service.yaml'), ...]
    """
    pkg = resolve_package(name_or_package, version)
    settings = settings_for(pkg, image=image, **options)
    return write(settings, kind, out if out is not None else Path.cwd() / f"{settings.app}-{kind}")


def resolve_package(name_or_package: Any, version: str | None = None):
    from .._package import Package

    if isinstance(name_or_package, Package):
        return name_or_package
    return Package.load(name_or_package, version=version)

