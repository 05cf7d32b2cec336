"""Request bodies checked against the Google Wallet API's discovery document.

walletobjects.v1.json is Google's public description of the Wallet REST API (the copy in
google-api-python-client 2.202.0, googleapiclient/discovery_cache/documents/, revision
in its "revision" key). A small walker over its `schemas` reports what Google would
refuse or ignore: fields a resource does not have, values of the wrong JSON type, enum
values it does not list, and fields it marks deprecated. The loopback Google
(google_server.py) answers 400 to a body with violations, so every test that syncs a
card checks its bodies, and test_google_discovery.py checks the richest ones directly.

To update: `pip download google-api-python-client --no-deps`, unzip that file from the
wheel over this copy, and run the wallet tests.
"""

import json
from functools import cache
from pathlib import Path

DOCUMENT = Path(__file__).with_name("walletobjects.v1.json")
#: The discovery schema of each resource a test server serves.
RESOURCE_SCHEMAS = {"genericClass": "GenericClass", "genericObject": "GenericObject"}
# String formats whose JSON value may also be a number (Google's int64 are strings).
_NUMERIC_STRINGS = {"int64", "uint64"}


@cache
def schemas():
    return json.loads(DOCUMENT.read_text())["schemas"]


def violations(body, schema_name):
    """What in `body` the schema `schema_name` does not allow, as "path: problem" lines
    (none: Google's discovery document accepts it). None values are allowed: PATCH
    clears a field with null."""
    found = []
    _walk(body, {"$ref": schema_name}, schema_name, found)
    return found


def _walk(value, schema, path, found):
    if value is None:
        return
    if "$ref" in schema:
        schema = schemas()[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            found.append(f"{path}: an object expected, got {type(value).__name__}")
            return
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                if properties[name].get("deprecated"):
                    found.append(f"{path}.{name}: deprecated field")
                _walk(item, properties[name], f"{path}.{name}", found)
            elif extra is not None:
                _walk(item, extra, f"{path}.{name}", found)
            else:
                found.append(f"{path}.{name}: unknown field")
    elif kind == "array":
        if not isinstance(value, list):
            found.append(f"{path}: an array expected, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _walk(item, schema.get("items", {}), f"{path}[{index}]", found)
    elif kind == "string":
        numeric = schema.get("format") in _NUMERIC_STRINGS and isinstance(value, int)
        if not isinstance(value, str) and not numeric:
            found.append(f"{path}: a string expected, got {type(value).__name__}")
        elif "enum" in schema and value not in schema["enum"]:
            found.append(f"{path}: {value!r} is not one of its enum values")
        elif "enum" in schema and _enum_deprecated(schema, value):
            found.append(f"{path}: {value!r} is a deprecated enum value")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            found.append(f"{path}: an integer expected, got {type(value).__name__}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append(f"{path}: a number expected, got {type(value).__name__}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            found.append(f"{path}: a boolean expected, got {type(value).__name__}")


def _enum_deprecated(schema, value):
    flags = schema.get("enumDeprecated")
    return bool(flags) and flags[schema["enum"].index(value)]
