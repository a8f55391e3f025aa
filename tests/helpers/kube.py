"""Offline validators for generated Kubernetes and KServe manifests (no cluster can run here).

Three independent checks, each catching what the others miss:

* kubernetes-validate in strict mode against the JSON schema of every Kubernetes version 1.29..1.37
  (unknown fields, wrong types, missing required fields); a built-in kind without a schema is an error;
* the kubernetes client's models (and the KServe SDK's, for InferenceService), filled strictly: an
  unknown key or a missing required field raises;
* ``kubernetes.utils.parse_quantity`` on every quantity, which the schemas accept as any string.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types

VERSIONS = [f"1.{minor}" for minor in range(29, 38)]


class ManifestInvalid(AssertionError):
    """A manifest failed an offline check; the message names the check, the version and the path."""


def built_in(api_version: str) -> bool:
    """Kubernetes' own API groups: the core group (``v1``), dot-less groups (``apps``, ``policy``, ...) and
    ``*.k8s.io``; a CRD's group (``serving.kserve.io``) has a dot and another domain."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def schema_errors(doc: dict) -> list[str]:
    """kubernetes-validate --strict against each version; [] when every version accepts ``doc``."""
    import kubernetes_validate

    errors = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            if built_in(doc.get("apiVersion", "")):  # a built-in kind must have a schema
                errors.append(f"{version}: {exc}")
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            errors.append(f"{version}: {where}: {exc.message}")
    return errors


def kserve_models():
    """The KServe SDK's models without importing ``kserve`` itself (whose __init__ loads its model
    server: FastAPI, gRPC, cloudevents...); the models need only ``six`` and the kubernetes client."""
    if "kserve.models" in sys.modules:
        return sys.modules["kserve.models"]
    spec = importlib.util.find_spec("kserve")
    if spec is None:
        raise ModuleNotFoundError("kserve is not installed: pip install --no-deps kserve")
    if "kserve" not in sys.modules:
        stub = types.ModuleType("kserve")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["kserve"] = stub
    import kserve.models

    return kserve.models


def _model_class(name: str):
    import kubernetes.client.models as k8s

    if hasattr(k8s, name):
        return getattr(k8s, name)
    return getattr(kserve_models(), name)


QUANTITY_KEYS = {"requests", "limits", "size_limit"}


def build_model(data, type_name: str, path: str = "$"):
    """Fill the generated model ``type_name`` from ``data``; unknown keys, wrong shapes, missing required
    fields (the models' own client-side validation) and malformed quantities raise ManifestInvalid."""
    from kubernetes.utils import parse_quantity

    if data is None:
        return None
    if type_name.lower().startswith("list["):  # the models spell it list[X] or List[X]
        if not isinstance(data, list):
            raise ManifestInvalid(f"{path}: expected a list, got {type(data).__name__}")
        return [build_model(v, type_name[5:-1], f"{path}[{i}]") for i, v in enumerate(data)]
    match = re.match(r"(?:dict\(|Dict\[)([^,]*), (.*)[)\]]$", type_name)
    if match:
        if not isinstance(data, dict):
            raise ManifestInvalid(f"{path}: expected a mapping, got {type(data).__name__}")
        return {k: build_model(v, match.group(2), f"{path}.{k}") for k, v in data.items()}
    if type_name in ("str", "int", "bool", "float", "object", "datetime", "date"):
        expected = {"str": str, "int": int, "bool": bool, "float": (int, float)}.get(type_name)
        if expected and (not isinstance(data, expected) or (type_name == "int" and isinstance(data, bool))):
            raise ManifestInvalid(f"{path}: expected {type_name}, got {data!r}")
        return data
    cls = _model_class(type_name)
    if not isinstance(data, dict):
        raise ManifestInvalid(f"{path}: expected a {type_name} object, got {data!r}")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise ManifestInvalid(f"{path}: {type_name} has no field {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        attr = by_json[key]
        kwargs[attr] = build_model(value, cls.openapi_types[attr], f"{path}.{key}")
        if attr in QUANTITY_KEYS:
            for name, quantity in (kwargs[attr].items() if isinstance(kwargs[attr], dict) else [(key, kwargs[attr])]):
                try:
                    parse_quantity(quantity)
                except ValueError as exc:
                    raise ManifestInvalid(f"{path}.{key}.{name}: {quantity!r} is not a quantity ({exc})") from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ManifestInvalid(f"{path}: {type_name}: {' '.join(str(exc).split())}") from None


MODEL_OF = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}


def check(doc: dict) -> None:
    """Every offline check; raises ManifestInvalid naming what failed."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in MODEL_OF:
        raise ManifestInvalid(f"no model known for {key}")
    errors = schema_errors(doc)
    if errors:
        raise ManifestInvalid(f"{doc['kind']} fails kubernetes-validate --strict: " + "; ".join(errors[:3]))
    build_model(doc, MODEL_OF[key])
