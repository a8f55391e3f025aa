"""The JSON Schema (draft 2020-12) of one request instance, derived from the input schema.

It states what the validator enforces: the JSON type of each column, the range its dtype can hold,
the trained categories, the longest string accepted, whether null is allowed, and no other keys.
"""

from __future__ import annotations

from .limits import Limits
from .schema import value_range

_TYPES = {"integer": "integer", "number": "number", "boolean": "boolean", "category": None, "string": "string"}


def _property(column: dict, limits: Limits) -> dict:
    prop: dict = {"description": f"trained as {column['dtype']}"}
    json_type = _TYPES[column["kind"]]
    if column["kind"] == "category" and column.get("categories") is not None:
        prop["enum"] = list(column["categories"])
    elif json_type:
        prop["type"] = json_type
    if column["kind"] == "integer" or (column["kind"] == "number" and column.get("accepts")):
        prop["minimum"], prop["maximum"] = column.get("accepts") or value_range(column)
    elif column["kind"] == "number":  # exclusive: orjson reads a literal past the largest float as that float
        prop["exclusiveMinimum"], prop["exclusiveMaximum"] = value_range(column)
    if column["kind"] == "string":
        prop["maxLength"] = limits.max_string
    if column.get("min") is not None:
        prop["x-observed-range"] = [column["min"], column["max"]]
    if column["nullable"]:
        if "enum" in prop:
            prop["enum"] = prop["enum"] + [None]
        else:
            prop["type"] = [prop["type"], "null"]
    return prop


def instance_schema(schema: dict, *, title: str = "instance", limits: Limits | None = None,
                    standalone: bool = True) -> dict:
    """One row's schema; ``standalone=False`` leaves out ``$schema`` (inside an OpenAPI 3.1 document)."""
    limits = limits or Limits(max_batch=int(schema.get("max_batch", Limits.max_batch)))
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema"} if standalone else {}
    return {
        **document,
        "title": title,
        "type": "object",
        "properties": {c["name"]: _property(c, limits) for c in schema["columns"]},
        "required": [c["name"] for c in schema["columns"]],
        "additionalProperties": False,
    }
