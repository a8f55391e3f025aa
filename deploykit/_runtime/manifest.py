"""The package manifest: the typed contract between the build side and the served runtime.

``deploykit.package`` writes it once, as ``model/deploykit.json``, when every stage has run; the
service, the parity check, the docker build, the card and the release layer read it through these
records. ``docs/architecture.md`` documents every field. The format carries a version: a reader
accepts :data:`FORMAT` and every older format it knows how to upgrade, and refuses a newer one with a
message saying which deploykit writes it.

Free-form parts stay plain data owned by one module each: ``schema`` (:mod:`.schema`), ``explainer``
(:mod:`.explain`), ``serving.fast_path`` (:mod:`.fastpath`), ``metrics``, ``parity`` and ``card``.

For code written against the untyped dict of format 1, a manifest still reads like one
(``manifest["schema"]``, ``manifest.get("classes")``); deploykit itself uses the attributes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IntegrityError

FORMAT = 2
FILENAME = "deploykit.json"


@dataclass
class Artifact:
    """One file of the package, with the sha256 it had when it was written."""

    file: str
    sha256: str
    format: str | None = None  # the model's serialisation: "skops" or "cloudpickle"
    trusted_types: list[str] | None = None  # skops types deploykit listed when it wrote the file

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class Serving:
    """How the service runs the package."""

    workers: int = 1
    access_log: bool = False
    preload_explainer: bool = False
    fast_path: dict = field(default_factory=dict)  # the compiled path's plan: see _fastpath.plan_fast_path

    @property
    def compiled(self) -> bool:
        return bool(self.fast_path.get("enabled"))


@dataclass
class Manifest:
    """Everything the service needs to load, validate, predict and explain, and what the build found."""

    name: str
    version: str
    task: str  # "binary", "multiclass" or "regression"
    estimator: str  # qualified class name of the fitted model
    schema: dict  # the input schema of one row: see deploykit/_runtime/schema.py
    artifacts: dict[str, Artifact]  # model, background, sample, card_json, card_html, card_markdown, ...
    classes: list | None = None
    input_kind: str = "frame"  # "frame": the model takes a DataFrame; "array": a numpy array
    created: str = ""
    deploykit_version: str = ""
    python: str = ""
    model_libraries: dict[str, str] = field(default_factory=dict)
    custom_code: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    explainer: dict | None = None
    serving: Serving = field(default_factory=Serving)
    requirements: list[str] = field(default_factory=list)
    lock: list[str] = field(default_factory=list)
    parity: dict | None = None
    card: dict | None = None  # the card's summary: format, file, sha256, profile, errors, warnings, plots
    limits: dict = field(default_factory=dict)  # what one request may be and cost: see .limits.Limits
    format: int = FORMAT

    # -- names derived from the identity ---------------------------------------------------------------
    @property
    def service_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def bento_version(self) -> str:
        return f"v{self.version}"

    @property
    def model(self) -> Artifact:
        return self.artifacts["model"]

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version}

    # -- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["artifacts"] = {key: artifact.to_dict() for key, artifact in self.artifacts.items()}
        data["serving"] = dataclasses.asdict(self.serving)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        data = _upgrade(dict(data))
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["artifacts"] = {key: Artifact(**record) for key, record in data.get("artifacts", {}).items()}
        serving = data.get("serving") or {}
        values["serving"] = Serving(**{k: v for k, v in serving.items() if k in {f.name for f in dataclasses.fields(Serving)}})
        return cls(**values)

    @classmethod
    def read(cls, directory: str | Path) -> Manifest:
        """The manifest in ``directory`` (a package's ``model/`` folder)."""
        path = Path(directory) / FILENAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise IntegrityError(f"{path} does not exist: {Path(directory)} is not a deploykit package's model folder",
                                 path=str(path)) from None
        return cls.from_dict(data)

    def write(self, directory: str | Path) -> Path:
        """Write the manifest into ``directory`` atomically; the package writer calls this once."""
        path = Path(directory) / FILENAME
        scratch = path.with_name(f".{FILENAME}.{os.getpid()}")
        scratch.write_text(self.to_json())
        os.replace(scratch, path)
        return path

    # -- the untyped view of format 1, for code that reads the manifest as a dict -------------------------
    def _legacy(self) -> dict:
        return {**self.to_dict(), "service_name": self.service_name, "bento_version": self.bento_version}

    def __getitem__(self, key: str) -> Any:
        data = self._legacy()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._legacy().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self._legacy()


def _upgrade(data: dict) -> dict:
    """Bring an older manifest to the current format."""
    found = data.get("format", 1)
    if found > FORMAT:
        raise IntegrityError(
            f"this package's manifest has format {found}, newer than this deploykit reads ({FORMAT}); "
            "upgrade deploykit (pip install -U deploykit) to load it")
    if found == 1:  # format 1 kept the bento's location and two derived names in the manifest itself
        for key in ("bento", "service_name", "bento_version"):
            data.pop(key, None)
        data["format"] = FORMAT
    return data
