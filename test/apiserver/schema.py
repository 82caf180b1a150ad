"""The part of CRD structural schemas kube-apiserver applies to custom
resources that our clients can observe: pruning of unknown fields, defaults,
and OpenAPI validation (types, required, enum, bounds, lengths, patterns,
item counts, int-or-string, nullable) and x-kubernetes-validations rules in
the CEL subset cel.py implements (other rules, and transition rules with
oldSelf, are skipped). Formats are not checked."""

from __future__ import annotations

import copy
import json
import re

import cel

Cause = tuple[str, str, str]

_ROOT_KEPT = ("apiVersion", "kind", "metadata")


def _prune(schema: dict, value, path: str = "", unknown: list | None = None):
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
        out = {}
        for key, child in value.items():
            child_schema = None
            if props and key in props:
                child_schema = props[key]
            elif isinstance(additional, dict):
                child_schema = additional
            elif additional is True or keep_unknown:
                out[key] = child
                continue
            else:
                if unknown is not None:
                    unknown.append(f"{path}.{key}" if path else key)
                continue  # unknown field: pruned
            if child is None and not child_schema.get("nullable"):
                continue
            out[key] = _prune(child_schema, child, f"{path}.{key}" if path else key, unknown)
        for key, child_schema in (props or {}).items():
            if key not in out and "default" in child_schema:
                out[key] = copy.deepcopy(child_schema["default"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], item, f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    return value


def unknown_fields(schema: dict, obj: dict) -> list[str]:
    """The fields pruning would drop (what fieldValidation=Strict rejects)."""
    unknown: list[str] = []
    _prune(schema, {k: v for k, v in obj.items() if k not in _ROOT_KEPT}, "", unknown)
    return unknown


def prune_and_default(schema: dict, obj: dict) -> dict:
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEPT}
    pruned = _prune(schema, body)
    for key in _ROOT_KEPT:
        if key in obj:
            pruned[key] = obj[key]
    return pruned


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _check(schema: dict, value, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append((where, "FieldValueTypeInvalid",
                           f'Invalid value: "null": {where} in body must be of type {schema["type"]}: "null"'))
        return
    expected = schema.get("type")
    actual = _type_name(value)
    if schema.get("x-kubernetes-int-or-string"):
        if actual not in ("integer", "string"):
            causes.append((where, "FieldValueTypeInvalid",
                           f'Invalid value: "{actual}": {where} in body must be of type integer or string'))
            return
    elif expected and not (actual == expected or (expected == "number" and actual == "integer")):
        causes.append((where, "FieldValueTypeInvalid",
                       f'Invalid value: "{actual}": {where} in body must be of type {expected}: "{actual}"'))
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append((where, "FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: "
                       f"{supported}"))
    if actual in ("integer", "number"):
        if "minimum" in schema and (value < schema["minimum"] or
                                    (schema.get("exclusiveMinimum") and value == schema["minimum"])):
            causes.append((where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body should be greater "
                           f"than or equal to {schema['minimum']}"))
        if "maximum" in schema and (value > schema["maximum"] or
                                    (schema.get("exclusiveMaximum") and value == schema["maximum"])):
            causes.append((where, "FieldValueInvalid", f"Invalid value: {value}: {where} in body should be less "
                           f"than or equal to {schema['maximum']}"))
    if actual == "string":
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append((where, "FieldValueInvalid", f'Invalid value: "{value}": {where} in body should be at '
                           f"least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append((where, "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} "
                           "bytes"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append((where, "FieldValueInvalid", f'Invalid value: "{value}": {where} in body should match '
                           f"'{schema['pattern']}'"))
    if actual == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append((where, "FieldValueInvalid", f"Invalid value: {len(value)}: {where} in body should have "
                           f"at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append((where, "FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                           f"{schema['maxItems']} items"))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]", causes)
    if actual == "object":
        for required in schema.get("required") or []:
            if required not in value:
                causes.append((f"{path}.{required}" if path else required, "FieldValueRequired", "Required value"))
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            if key in props:
                _check(props[key], child, child_path, causes)
            elif isinstance(additional, dict):
                _check(additional, child, child_path, causes)
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            causes.append((where, "FieldValueInvalid", f"Invalid value: {len(value)}: {where} in body should have "
                           f"at least {schema['minProperties']} properties"))
    for sub in schema.get("allOf") or []:
        _check(sub, value, path, causes)
    _check_rules(schema, value, path, causes)
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if options:
            passing = sum(1 for sub in options if not _collect(sub, value, path))
            if passing == 0 or (combinator == "oneOf" and passing > 1):
                causes.append((where, "FieldValueInvalid", f"Invalid value: {json.dumps(value)[:80]}: {where} in body "
                               f"must validate {'one and only one' if combinator == 'oneOf' else 'at least one'} "
                               "schema"))
    if isinstance(schema.get("not"), dict) and not _collect(schema["not"], value, path):
        causes.append((where, "FieldValueInvalid", f"Invalid value: {json.dumps(value)[:80]}: {where} in body "
                       "must not validate the schema (not)"))


_RULE_REASONS = {"FieldValueForbidden": "FieldValueForbidden", "FieldValueRequired": "FieldValueRequired",
                 "FieldValueDuplicate": "FieldValueDuplicate"}
_OPENAPI_TYPE = {"map": "object", "list": "array", "int": "integer", "double": "number", "bool": "boolean",
                 "string": "string", "null_type": "null"}


def _check_rules(schema: dict, value, path: str, causes: list[Cause]) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        try:
            ok, problem = cel.evaluate(rule["rule"], value), None
        except cel.Unsupported:
            continue
        except cel.CelError as e:
            ok, problem = False, f"{e} evaluating rule: {rule['rule']}"
        if ok:
            continue
        field = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
        message = problem or rule.get("message") or f"failed rule: {rule['rule']}"
        shown = _OPENAPI_TYPE.get(cel.type_of(value), "object")
        causes.append((field or "<root>", _RULE_REASONS.get(rule.get("reason", ""), "FieldValueInvalid"),
                       f'Invalid value: "{shown}": {message}'))


def _collect(schema: dict, value, path: str) -> list[Cause]:
    causes: list[Cause] = []
    _check(schema, value, path, causes)
    return causes


def validate(schema: dict, obj: dict) -> list[Cause]:
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEPT}
    top = dict(schema)
    top["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_KEPT}
    top.pop("required", None)
    causes = _collect(top, body, "")
    for required in schema.get("required") or []:
        if required not in _ROOT_KEPT and required not in body:
            causes.append((required, "FieldValueRequired", "Required value"))
    return causes
