"""The part of Kubernetes' CRD schema rules our CRDs use, in plain Python.

- `structural_problems(schema)`: the structural-schema rules kube-apiserver
  enforces on apiextensions.k8s.io/v1 CRDs (a type everywhere except
  int-or-string / preserve-unknown nodes, nothing but the int-or-string anyOf
  inside logic junctors, items on arrays, properties xor additionalProperties,
  metadata at the root limited to name/generateName, defaults valid for their
  node).
- `validate(schema, value, cel_twins)`: value validation as the apiserver does
  it for the keywords we use (type, enum, pattern, bounds, lengths, item and
  property counts, required, additionalProperties, int-or-string) plus the
  CEL rules, evaluated through their Python twins (a rule without a twin is an
  error). Unknown fields are reported as errors too: kube-apiserver would prune
  them silently, and `kubectl apply` (strict field validation) rejects them,
  which is what a user of our examples would see.
"""

from __future__ import annotations

import re

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]
FORBIDDEN_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")


def structural_problems(schema: dict, path: str = "", root: bool = True) -> list[str]:
    problems: list[str] = []
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "type" not in schema and not (int_or_string or preserve):
        problems.append(f"{path or '<root>'}: no type")
    for junctor in JUNCTORS:
        if junctor not in schema:
            continue
        if int_or_string and junctor == "anyOf" and schema[junctor] == INT_OR_STRING_ANYOF:
            continue
        branches = schema[junctor] if isinstance(schema[junctor], list) else [schema[junctor]]
        for branch in branches:
            for key in FORBIDDEN_IN_JUNCTORS:
                if key in branch:
                    problems.append(f"{path}: '{key}' inside {junctor}")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{path}: array without items")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    if root and "metadata" in schema.get("properties", {}):
        meta = schema["properties"]["metadata"]
        extra = set(meta.get("properties", {})) - {"name", "generateName"}
        if extra or set(meta) - {"type", "properties"}:
            problems.append("metadata: only type and name/generateName may be specified at the root")
    if "default" in schema and not int_or_string:
        for problem in validate(schema, schema["default"], {}, path + "(default)", strict=False):
            problems.append(f"{path}: default invalid: {problem}")
    for name, child in schema.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{name}", root=False)
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}[*]", root=False)
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]", root=False)
    return problems


def _type_ok(expected: str, value) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    raise ValueError(f"type {expected} not in the supported subset")


def validate(schema: dict, value, cel_twins: dict, path: str = "", strict: bool = True) -> list[str]:
    """Errors as 'path: what', empty when the value is valid."""
    errors: list[str] = []
    here = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if not (_type_ok("integer", value) or _type_ok("string", value)):
            return [f"{here}: must be an integer or a string"]
    elif "type" in schema and not _type_ok(schema["type"], value):
        return [f"{here}: must be of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{here}: must be one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{here}: does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{here}: longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{here}: shorter than {schema['minLength']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{here}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{here}: above {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{here}: more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{here}: fewer than {schema['minItems']} items")
        if schema.get("x-kubernetes-list-type") == "set" and len(set(map(repr, value))) != len(value):
            errors.append(f"{here}: duplicate items in a set")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value
                    if isinstance(item, dict)]
            if len(set(keys)) != len(keys):
                errors.append(f"{here}: duplicate map keys")
        for i, item in enumerate(value):
            errors += validate(schema["items"], item, cel_twins, f"{path}[{i}]", strict)
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(f"{here}: more than {schema['maxProperties']} properties")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(f"{here}: fewer than {schema['minProperties']} properties")
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{here}: {key} is required")
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if key in props:
                errors += validate(props[key], child, cel_twins, f"{path}.{key}", strict)
            elif isinstance(additional, dict):
                errors += validate(additional, child, cel_twins, f"{path}.{key}", strict)
            elif strict and not schema.get("x-kubernetes-preserve-unknown-fields") and "properties" in schema:
                errors.append(f"{here}: unknown field {key}")
    if errors:
        return errors  # CEL rules only run on values that passed the OpenAPI checks
    for rule in schema.get("x-kubernetes-validations", []):
        if rule["rule"] not in cel_twins:
            errors.append(f"{here}: CEL rule without a Python twin: {rule['rule']}")
            continue
        _, twin = cel_twins[rule["rule"]]
        if not twin(value):
            errors.append(f"{here}: {rule['message']}")
    return errors


def with_defaults(schema: dict, value):
    """The value as the apiserver stores it: defaults filled in."""
    if isinstance(value, dict):
        out = {}
        props = schema.get("properties", {})
        for key, child in value.items():
            out[key] = with_defaults(props.get(key, schema.get("additionalProperties") or {}), child)
        for key, child_schema in props.items():
            if key not in out and "default" in child_schema:
                out[key] = child_schema["default"]
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], item) for item in value]
    return value
