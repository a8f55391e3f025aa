"""The JSON Schema (draft 2020-12) of one request instance, derived from the input schema."""

from __future__ import annotations

_TYPES = {"integer": "integer", "number": "number", "boolean": "boolean", "category": None, "string": "string"}


def _property(column: dict) -> dict:
    prop: dict = {"description": f"trained as {column['dtype']}"}
    json_type = _TYPES[column["kind"]]
    if column["kind"] == "category" and column.get("categories") is not None:
        prop["enum"] = list(column["categories"])
    elif json_type:
        prop["type"] = json_type
    if column.get("min") is not None:
        prop["x-observed-range"] = [column["min"], column["max"]]
    if column["nullable"]:
        if "enum" in prop:
            prop["enum"] = prop["enum"] + [None]
        else:
            prop["type"] = [prop["type"], "null"]
    return prop


def instance_schema(schema: dict, *, title: str = "instance") -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {c["name"]: _property(c) for c in schema["columns"]},
        "required": [c["name"] for c in schema["columns"]],
        "additionalProperties": False,
    }
