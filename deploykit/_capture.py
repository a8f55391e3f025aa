"""Capturing a fitted model: what it is, what it needs, and how to write it so a clean process can load it."""

from __future__ import annotations

import importlib.metadata
import io
import pickle
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._runtime import artifacts
from .exceptions import SchemaError, UnsupportedModelError

# Always needed to serve, whatever the model is.
SERVING_STACK = ("bentoml", "fastapi", "numpy", "pandas", "uvloop", "httptools", "orjson", "cryptography")


@dataclass
class ModelFacts:
    task: str  # "binary", "multiclass" or "regression"
    classes: list | None
    estimator: str
    input_kind: str  # "frame": the model takes a DataFrame; "array": it was fitted on a numpy array
    columns: list[str]
    libraries: dict[str, str] = field(default_factory=dict)  # distribution -> version the objects come from
    custom_modules: list[str] = field(default_factory=list)  # modules serialised by value
    libraries_modules: list[str] = field(default_factory=list)  # modules the object graph references
    mentioned_modules: set[str] = field(default_factory=set)  # module names notebook code imports


def qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def inspect_model(model: Any, frame, *, from_array: bool = False) -> ModelFacts:
    """Check the model is a fitted estimator that fits ``frame``; return what serving needs to know."""
    if not hasattr(model, "predict"):
        raise UnsupportedModelError(
            f"expected a fitted estimator with a predict method, got {qualified_name(model)}; "
            "pass the fitted model object (e.g. the Pipeline after .fit(X_train, y_train))"
        )
    _check_fitted(model)
    task, classes = _task(model)
    input_kind, columns = _input_kind(model, frame, from_array)
    modules, data = referenced_modules(model)
    mentioned = mentioned_modules(data)
    if "__main__" in mentioned:  # cloudpickle wrote notebook code by value: it names its module
        modules.add("__main__")
    return ModelFacts(
        task=task,
        classes=classes,
        estimator=qualified_name(model),
        input_kind=input_kind,
        columns=columns,
        libraries=distributions_of(modules),
        custom_modules=sorted(m for m in modules if is_custom_module(m)),
        libraries_modules=sorted(modules),
        mentioned_modules=mentioned,
    )


def _check_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not fitted yet; call .fit(X_train, y_train) before packaging it"
        ) from None
    except TypeError:
        pass  # not a scikit-learn estimator: the parity check will show whether it predicts


def _task(model: Any) -> tuple[str, list | None]:
    from sklearn.base import is_classifier, is_regressor

    classes = getattr(model, "classes_", None)
    if is_classifier(model) or (classes is not None and hasattr(model, "predict_proba")):
        if classes is None:
            raise UnsupportedModelError(f"classifier {type(model).__name__} has no classes_; is it fitted?")
        classes = np.asarray(classes).tolist()
        return ("binary" if len(classes) == 2 else "multiclass"), classes
    if is_regressor(model) or classes is None:
        return "regression", None
    raise UnsupportedModelError(f"cannot tell whether {type(model).__name__} is a classifier or a regressor")


def _input_kind(model: Any, frame, from_array: bool) -> tuple[str, list[str]]:
    """Whether the model takes a DataFrame or an array, and its columns in the order it knows them."""
    columns = list(frame.columns)
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None:
        expected = getattr(model, "n_features_in_", None)
        if expected is not None and expected != len(columns):
            raise SchemaError(
                f"the model was fitted on {expected} features but X_train has {len(columns)} columns; "
                "pass the same X_train the model was fitted on"
            )
        # fitted on an array, or a first step (custom code) that records nothing: trust X_train's type
        return ("array" if from_array or expected is not None else "frame"), columns
    fitted = [str(c) for c in fitted]
    if fitted == columns:
        return "frame", columns
    missing, extra = sorted(set(fitted) - set(columns)), sorted(set(columns) - set(fitted))
    if not missing and not extra:
        return "frame", fitted  # same columns, another order: serve in the order the model knows
    raise SchemaError(
        f"X_train's columns differ from those the model was fitted on: missing {missing[:5]}, "
        f"unexpected {extra[:5]}; pass the frame the model was fitted on",
        column=(missing or extra)[0],
    )


class _Recorder(pickle.Unpickler):
    """Reads a pickle back while noting the module of every class and function it references."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return super().find_class(module, name)


def referenced_modules(model: Any) -> tuple[set[str], bytes]:
    """Modules whose classes or functions the model's object graph refers to (walks every step),
    and the pickle they were read from."""
    try:
        data = pickle.dumps(model)
    except Exception:  # lambdas and other notebook objects only cloudpickle can write
        import cloudpickle

        data = cloudpickle.dumps(model)
    recorder = _Recorder(data)
    recorder.load()
    return recorder.modules, data


_STDLIB_PATHS = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}


def is_custom_module(module: str) -> bool:
    """True for code that will not exist where the model is served: ``__main__`` and local files."""
    if module == "__main__" or module.startswith("__main__."):
        return True
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    if top in importlib.metadata.packages_distributions():
        return False
    loaded = sys.modules.get(top)
    path = getattr(loaded, "__file__", None)
    if path is None:
        return False
    return not any(parent in _STDLIB_PATHS for parent in Path(path).resolve().parents)


def distributions_of(modules: set[str] | list[str]) -> dict[str, str]:
    """Map module names to the installed distributions providing them, with their versions."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for module in modules:
        for dist in owners.get(module.split(".")[0], []):
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def mentioned_modules(data: bytes) -> set[str]:
    """Top-level module names a pickle mentions as strings: cloudpickled notebook code imports
    modules by name (``subimport('category_encoders')``) rather than referencing a class."""
    import pickletools

    names: set[str] = set()
    try:
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and arg.split(".")[0].isidentifier():
                names.add(arg.split(".")[0])
    except Exception:
        pass
    return names


def dependency_closure(direct: list[str] | set[str]) -> dict[str, str]:
    """Every installed distribution ``direct`` needs (Requires-Dist, transitively), with its version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, tuple[str, str]] = {}
    stack = list(direct)
    while stack:
        key = canonicalize_name(stack.pop())
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(key)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[key] = (dist.metadata["Name"], dist.version)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                stack.append(requirement.name)
    return dict(sorted(found.values(), key=lambda kv: kv[0].lower()))


def requirements(facts: ModelFacts, fmt: str, runtime_modules: list[str], *, explain: bool,
                 extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The pinned requirement set and its full lock.

    Direct requirements are the libraries the model's objects come from, the serialisation format,
    the serving stack, shap when explaining, and what notebook code imports by name. The lock pins
    everything those need, as installed here, so the image reproduces the environment parity ran in.
    """
    loaded = set(runtime_modules) & (facts.mentioned_modules | set(facts.libraries_modules))
    wanted = loaded | set(SERVING_STACK) | {fmt} | set(extra) | ({"shap"} if explain else set())
    direct = set(facts.libraries) | set(distributions_of(wanted))
    direct.discard("deploykit")  # the runtime is copied into the bento, not installed
    lock = dependency_closure(direct)
    lock.pop("deploykit", None)
    pinned = [f"{name}=={version}" for name, version in lock.items() if name in direct]
    return pinned, [f"{name}=={version}" for name, version in lock.items()]


def unknown_category_policies(model: Any, columns: list[str]) -> dict[str, str]:
    """For columns encoded by a scikit-learn encoder, say what the model does with an unseen category."""
    policies: dict[str, str] = {}
    for transformer, cols in _column_transformers(model):
        encoder = _last_encoder(transformer)
        if encoder is None:
            continue
        handle = getattr(encoder, "handle_unknown", "error")
        name = type(encoder).__name__
        if name == "OneHotEncoder" and handle in ("ignore", "infrequent_if_exist"):
            text = f"the model's OneHotEncoder(handle_unknown={handle!r}) would encode it as all zeros"
        elif name == "OrdinalEncoder" and handle == "use_encoded_value":
            text = f"the model's OrdinalEncoder would encode it as {getattr(encoder, 'unknown_value', None)!r}"
        else:
            text = f"the model's {name}(handle_unknown={handle!r}) would fail on it"
        for col in cols:
            if col in columns:
                policies[col] = text
    return policies


def _column_transformers(model: Any):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    for _, step in steps:
        if isinstance(step, ColumnTransformer):
            for _, transformer, cols in getattr(step, "transformers_", []):
                if isinstance(cols, (list, tuple, np.ndarray)) and all(isinstance(c, str) for c in cols):
                    yield transformer, list(cols)
                elif isinstance(cols, str):
                    yield transformer, [cols]


def _last_encoder(transformer: Any):
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    encoders = [s for s in steps if type(s).__name__ in ("OneHotEncoder", "OrdinalEncoder")]
    return encoders[-1] if encoders else None


def choose_format(model: Any, facts: ModelFacts) -> str:
    """skops where it can represent the model and reads it back identically; else cloudpickle."""
    if facts.custom_modules:
        return artifacts.CLOUDPICKLE
    try:
        import skops.io

        data = skops.io.dumps(model)
        trusted = skops.io.get_untrusted_types(data=data)
        if any(is_custom_module(t.rsplit(".", 1)[0]) for t in trusted):
            return artifacts.CLOUDPICKLE
        skops.io.loads(data, trusted=trusted)
    except Exception:  # skops cannot represent every object; cloudpickle can, behind a sha256
        return artifacts.CLOUDPICKLE
    return artifacts.SKOPS


def register_by_value(facts: ModelFacts) -> None:
    """Make cloudpickle carry local modules' code inside the artifact (``__main__`` already is)."""
    import cloudpickle

    for module in facts.custom_modules:
        top = sys.modules.get(module)
        if top is not None and module != "__main__" and not module.startswith("__main__."):
            try:
                cloudpickle.register_pickle_by_value(top)
            except ValueError:
                pass
