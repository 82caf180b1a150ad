"""Patch formats the apiserver accepts: JSON merge patch (RFC 7386), JSON patch
(RFC 6902). Strategic merge patch is approximated by merge patch (see
docs/testing-apiserver.md)."""

from __future__ import annotations

import copy


class PatchError(ValueError):
    pass


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_strategic_directives(patch):
    """Drops `$patch`, `$retainKeys`, `$setElementOrder/...` and
    `$deleteFromPrimitiveList/...` keys so a strategic patch applies as a merge
    patch."""
    if isinstance(patch, dict):
        return {k: strip_strategic_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [strip_strategic_directives(v) for v in patch]
    return patch


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _parent(doc, pointer: str):
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer \"{pointer}\"")
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"doc is missing path: \"{pointer}\"")
            current = current[token]
        elif isinstance(current, list):
            try:
                current = current[int(token)]
            except (ValueError, IndexError):
                raise PatchError(f"doc is missing path: \"{pointer}\"") from None
        else:
            raise PatchError(f"doc is missing path: \"{pointer}\"")
    return current, tokens[-1]


def _get(doc, pointer: str):
    if pointer == "":
        return doc
    parent, key = _parent(doc, pointer)
    try:
        return parent[key] if isinstance(parent, dict) else parent[int(key)]
    except (KeyError, ValueError, IndexError, TypeError):
        raise PatchError(f"doc is missing path: \"{pointer}\"") from None


def _add(doc, pointer: str, value):
    if pointer == "":
        return value
    parent, key = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        if key == "-":
            parent.append(value)
        else:
            try:
                index = int(key)
            except ValueError:
                raise PatchError(f"invalid array index \"{key}\"") from None
            if index < 0 or index > len(parent):
                raise PatchError(f"add operation does not apply: index {index} out of bounds")
            parent.insert(index, value)
    else:
        raise PatchError(f"doc is missing path: \"{pointer}\"")
    return doc


def _remove(doc, pointer: str):
    parent, key = _parent(doc, pointer)
    try:
        if isinstance(parent, dict):
            if key not in parent:
                raise KeyError(key)
            return parent.pop(key)
        return parent.pop(int(key))
    except (KeyError, ValueError, IndexError, AttributeError):
        raise PatchError(f"remove operation does not apply: doc is missing path: \"{pointer}\"") from None


def json_patch(doc, operations):
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid json patch operation: {op}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if path == "":
                doc = copy.deepcopy(op.get("value"))
            else:
                _remove(doc, path)
                doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc
