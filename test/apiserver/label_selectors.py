"""Label and field selectors as kube-apiserver parses them from query strings.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
comma-separated (AND). Field selectors: `path=value`, `path==value`,
`path!=value` over the fields each resource type declares as selectable.
"""

from __future__ import annotations

import re


class SelectorError(ValueError):
    pass


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside a `( ... )` value set."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str) -> str:
    if not re.fullmatch(_KEY, key) or len(key) > 316:
        raise SelectorError(f"invalid label key \"{key}\"")
    return key


def _check_value(value: str) -> str:
    if not re.fullmatch(_VALUE, value) or len(value) > 63:
        raise SelectorError(f"invalid label value: \"{value}\"")
    return value


class LabelSelector:
    def __init__(self, text: str | None):
        self.requirements: list[tuple[str, str, list[str]]] = []
        for term in _split_top_level(text or ""):
            self.requirements.append(self._parse_term(term))

    @staticmethod
    def _parse_term(term: str) -> tuple[str, str, list[str]]:
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", term)
        if m:
            values = [_check_value(v.strip()) for v in m.group(3).split(",") if v.strip()]
            if not values:
                raise SelectorError(f"found '{term}': values for '{m.group(2)}' must be non-empty")
            return _check_key(m.group(1)), m.group(2), values
        for op in ("==", "!=", "="):
            if op in term:
                key, value = term.split(op, 1)
                return _check_key(key.strip()), "!=" if op == "!=" else "=", [_check_value(value.strip())]
        if term.startswith("!"):
            return _check_key(term[1:].strip()), "!", []
        return _check_key(term), "exists", []

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        for key, op, values in self.requirements:
            present = key in labels
            if op == "=" and (not present or labels[key] != values[0]):
                return False
            if op == "!=" and present and labels[key] == values[0]:
                return False
            if op == "in" and (not present or labels[key] not in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
        return True


def field_value(obj: dict, path: str) -> str:
    current = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


class FieldSelector:
    def __init__(self, text: str | None, supported: set[str]):
        self.requirements: list[tuple[str, bool, str]] = []
        for term in _split_top_level(text or ""):
            for op in ("==", "!=", "="):
                if op in term:
                    field, value = term.split(op, 1)
                    field = field.strip()
                    if field not in supported:
                        raise SelectorError(f"field label not supported: {field}")
                    self.requirements.append((field, op != "!=", value.strip()))
                    break
            else:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")

    def matches(self, obj: dict) -> bool:
        return all((field_value(obj, f) == v) == eq for f, eq, v in self.requirements)

    def exact_name(self) -> str | None:
        for field, eq, value in self.requirements:
            if field == "metadata.name" and eq:
                return value
        return None
