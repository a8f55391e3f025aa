"""The edge bundle: a package's compiled model as a folder (and a zip) that predicts with numpy and its engine.

``Package.export("edge", path)`` writes::

    path/
      predict.py            predict(rows), predict_proba(rows)          (templates/edge/predict.py.j2)
      requirements.txt      numpy and the engine (treelite or onnxruntime), pinned as installed here
      README.md
      deploykit_edge/       the serving runtime's schema, prep, fastpath, artifacts, manifest and errors modules
      model/                the compiled model, prep.json, schema.json, edge.json, parity.json, the card
    path.zip                the same folder, zipped

The runtime modules are copied as they are: they import numpy and the engine only, so the bundle
validates rows and computes exactly what the served compiled path does.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import zipfile
from pathlib import Path

from ._runtime import artifacts
from ._templates import render
from ._version import __version__
from .exceptions import ConfigError

RUNTIME_DIR = Path(__file__).parent / "_runtime"
RUNTIME_MODULES = ("__init__.py", "artifacts.py", "errors.py", "fastpath.py", "limits.py", "manifest.py", "prep.py", "schema.py")
ENGINE_LABELS = {"treelite": "treelite (GTIL)", "onnx": "ONNX Runtime"}


def export_edge(pkg, path: str | Path) -> Path:
    """Write the edge bundle of ``pkg`` into the folder ``path`` and ``path.zip``; return the folder."""
    fast = pkg.manifest.serving.fast_path
    if not fast.get("enabled"):
        raise ConfigError(
            f"{pkg.name} v{pkg.version} has no compiled model to export: "
            f"{fast.get('reason', 'it was packaged with fast_path=False')}. The edge bundle needs the compiled "
            "path; package a model that compiles (see docs/serving.md, 'Compiled path')")
    folder = Path(path)
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists and is not empty; choose a new folder for the edge bundle")
    model_dir = folder / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    compiled = _copy_model_files(pkg, fast, model_dir)
    _copy_runtime(folder / "deploykit_edge")
    edge = _edge_manifest(pkg, fast, compiled)
    (model_dir / "edge.json").write_text(json.dumps(edge, indent=2))
    (model_dir / "parity.json").write_text(json.dumps(edge["parity"], indent=2))
    requirements = _requirements(fast)
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    context = _template_context(pkg, fast, requirements, card=(model_dir / "card.html").exists())
    (folder / "predict.py").write_text(render("edge/predict.py.j2", **context))
    (folder / "README.md").write_text(render("edge/README.md.j2", **context))
    _zip(folder)
    return folder


def _copy_model_files(pkg, fast: dict, model_dir: Path) -> dict:
    source = pkg.model_dir
    records = [{"file": fast["file"], "sha256": fast["sha256"]}]
    if fast.get("prep"):
        records.append(fast["prep"])
    for record in records:  # copied only after their sha256 checks out
        (model_dir / record["file"]).write_bytes(artifacts.read_verified(source / record["file"], record["sha256"]))
    (model_dir / "schema.json").write_text(json.dumps(pkg.schema, indent=2))
    for key, name in (("card_html", "card.html"), ("card_json", "card.json")):
        record = pkg.manifest["artifacts"].get(key)
        if record:
            (model_dir / name).write_bytes(artifacts.read_verified(source / record["file"], record["sha256"]))
    return {key: fast[key] for key in ("engine", "file", "sha256", "precision", "inputs", "input_name", "prep") if key in fast}


def _copy_runtime(target: Path) -> None:
    target.mkdir()
    for name in RUNTIME_MODULES:
        shutil.copyfile(RUNTIME_DIR / name, target / name)


def _edge_manifest(pkg, fast: dict, compiled: dict) -> dict:
    return {
        "format": 1,
        "name": pkg.name,
        "version": pkg.version,
        "made_by": f"deploykit {__version__}",
        "estimator": pkg.manifest["estimator"],
        "task": pkg.manifest["task"],
        "classes": pkg.manifest.get("classes"),
        "compiled": compiled,
        "parity": {
            "rows_checked": fast["rows_checked"],
            "label_mismatches": fast["label_mismatches"],
            "max_difference": fast["max_difference"],
            "tolerance": fast["tolerance"],
            "clean_process_rows": pkg.parity["rows"],
            "clean_process_ok": pkg.parity["ok"],
        },
    }


def _requirements(fast: dict) -> list[str]:
    names = ["numpy", *fast.get("requires", ["onnxruntime"])]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def _template_context(pkg, fast: dict, requirements: list[str], *, card: bool) -> dict:
    sample = pkg.sample_rows()[:1]
    return {
        "model_name": pkg.name, "version": pkg.version, "deploykit_version": __version__, "task": pkg.manifest["task"],
        "estimator": pkg.manifest["estimator"].rsplit(".", 1)[-1], "requirements": requirements,
        "engine_label": ENGINE_LABELS.get(fast.get("engine", "onnx"), fast.get("engine")),
        "compiled_file": fast["file"], "prep_file": (fast.get("prep") or {}).get("file"), "card": card,
        "example": repr(sample[0]) if sample else "{...}",
        "parity": {**{k: fast[k] for k in ("rows_checked", "max_difference", "tolerance")},
                   "clean_process_rows": pkg.parity["rows"]},
    }


def _zip(folder: Path) -> Path:
    archive = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                zf.write(file, Path(folder.name) / file.relative_to(folder))
    return archive


def bundle_size(folder: Path) -> dict:
    """Bytes of the folder's files and of its zip."""
    files = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    archive = Path(folder).with_name(Path(folder).name + ".zip")
    return {"folder_bytes": files, "zip_bytes": archive.stat().st_size if archive.exists() else None}
