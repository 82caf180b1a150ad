"""A subset of CEL, enough for the x-kubernetes-validations rules CRDs
typically carry: literals (int, double, string, bool, null, lists), `self`,
field selection, indexing, `! - * / % + < <= > >= == != in && || ?:`,
`has()`, `size()`, `type()` with `int`/`string`/`bool`/`double`/`list`/`map`,
`int()`, `string()`, and the methods `matches`, `contains`, `startsWith`,
`endsWith`, `size`, `all`, `exists`, `exists_one`. Rules using anything else
(or `oldSelf`) raise Unsupported, and the caller skips them."""

from __future__ import annotations

import re


class CelError(Exception):
    """The rule failed to evaluate (kube-apiserver reports that as invalid)."""


class Unsupported(Exception):
    """The rule uses CEL this subset does not implement."""


_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.\d+|\d+)u?|
    (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|
    (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])|
    (?P<id>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read {text[pos:pos + 10]!r}")
        pos = m.end()
        if m.group("num") is not None:
            raw = m.group("num")
            tokens.append(("num", float(raw) if "." in raw else int(raw)))
        elif m.group("str") is not None:
            body = m.group("str")[1:-1]
            tokens.append(("str", re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)),
                                         body)))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            tokens.append(("id", m.group("id")))
    tokens.append(("end", None))
    return tokens


class _Missing:
    pass


MISSING = _Missing()
TYPES = {"int", "string", "bool", "double", "list", "map", "null_type", "uint", "bytes"}


def type_of(value) -> str:
    if value is None:
        return "null_type"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "map"


class _Parser:
    """Recursive descent into nested tuples (an AST), evaluated by _eval."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, value=None):
        kind, v = self.tokens[self.i]
        if value is None:
            return kind, v
        return v == value and kind in ("op", "id")

    def take(self, value=None):
        kind, v = self.tokens[self.i]
        if value is not None and v != value:
            raise Unsupported(f"expected {value!r}, found {v!r}")
        self.i += 1
        return kind, v

    def parse(self):
        node = self.ternary()
        if self.tokens[self.i][0] != "end":
            raise Unsupported(f"unexpected {self.tokens[self.i][1]!r}")
        return node

    def ternary(self):
        cond = self.binary(0)
        if self.peek("?"):
            self.take("?")
            yes = self.ternary()
            self.take(":")
            return ("?:", cond, yes, self.ternary())
        return cond

    LEVELS = [("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int):
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while True:
            kind, v = self.peek()
            if kind in ("op", "id") and v in self.LEVELS[level]:
                self.take()
                node = (v, node, self.binary(level + 1))
            else:
                return node

    def unary(self):
        if self.peek("!"):
            self.take()
            return ("!", self.unary())
        if self.peek("-"):
            self.take()
            return ("neg", self.unary())
        return self.member()

    def args(self) -> list:
        self.take("(")
        out = []
        while not self.peek(")"):
            out.append(self.ternary())
            if self.peek(","):
                self.take(",")
        self.take(")")
        return out

    def member(self):
        node = self.primary()
        while True:
            if self.peek("."):
                self.take(".")
                _, name = self.take()
                if self.peek("("):
                    node = ("call", name, node, self.args())
                else:
                    node = ("field", node, name)
            elif self.peek("["):
                self.take("[")
                index = self.ternary()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def primary(self):
        kind, v = self.take()
        if kind in ("num", "str"):
            return ("lit", v)
        if kind == "op" and v == "(":
            node = self.ternary()
            self.take(")")
            return node
        if kind == "op" and v == "[":
            items = []
            while not self.peek("]"):
                items.append(self.ternary())
                if self.peek(","):
                    self.take(",")
            self.take("]")
            return ("list", items)
        if kind == "id":
            if v in ("true", "false"):
                return ("lit", v == "true")
            if v == "null":
                return ("lit", None)
            if v == "oldSelf":
                raise Unsupported("transition rules (oldSelf)")
            if self.peek("("):
                return ("call", v, None, self.args())
            return ("id", v)
        raise Unsupported(f"unexpected {v!r}")


def _select(value, name: str):
    if isinstance(value, dict):
        if name not in value:
            raise CelError(f"no such key: {name}")
        return value[name]
    raise CelError(f"no such key: {name}")


def _eval(node, env: dict):
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "id":
        if node[1] in env:
            return env[node[1]]
        if node[1] in TYPES:
            return ("type", node[1])
        raise Unsupported(f"unknown identifier {node[1]}")
    if op == "list":
        return [_eval(n, env) for n in node[1]]
    if op == "field":
        return _select(_eval(node[1], env), node[2])
    if op == "index":
        target, index = _eval(node[1], env), _eval(node[2], env)
        try:
            return target[index]
        except (KeyError, IndexError, TypeError):
            raise CelError(f"no such key: {index}") from None
    if op == "!":
        return not _truth(_eval(node[1], env))
    if op == "neg":
        return -_eval(node[1], env)
    if op == "?:":
        return _eval(node[2] if _truth(_eval(node[1], env)) else node[3], env)
    if op == "||":
        try:
            if _truth(_eval(node[1], env)):
                return True
        except CelError:
            if _truth(_eval(node[2], env)):
                return True  # CEL's commutative || absorbs an error on one side
            raise
        return _truth(_eval(node[2], env))
    if op == "&&":
        try:
            if not _truth(_eval(node[1], env)):
                return False
        except CelError:
            if not _truth(_eval(node[2], env)):
                return False
            raise
        return _truth(_eval(node[2], env))
    if op == "call":
        return _call(node, env)
    left, right = _eval(node[1], env), _eval(node[2], env)
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op == "in":
        if isinstance(right, dict):
            return left in right
        return any(_equal(left, r) for r in right)
    try:
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        if op == ">=":
            return left >= right
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            return left // right if isinstance(left, int) and isinstance(right, int) else left / right
        if op == "%":
            return left % right
    except (TypeError, ZeroDivisionError) as e:
        raise CelError(f"no matching overload for '{op}': {e}") from None
    raise Unsupported(op)


def _truth(value) -> bool:
    if not isinstance(value, bool):
        raise CelError("no matching overload: expected bool")
    return value


def _equal(a, b) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return a == b
    if type_of(a) != type_of(b) and not (type_of(a) in ("int", "double") and type_of(b) in ("int", "double")):
        return False
    return a == b


def _call(node, env: dict):
    _, name, target, args = node
    if target is None:
        if name == "has":
            if len(args) != 1 or args[0][0] != "field":
                raise Unsupported("has() needs a field selection")
            parent = _eval(args[0][1], env)
            return isinstance(parent, dict) and args[0][2] in parent
        values = [_eval(a, env) for a in args]
        if name == "size":
            return len(values[0])
        if name == "type":
            return ("type", type_of(values[0]))
        if name == "int":
            try:
                return int(values[0])
            except (TypeError, ValueError):
                raise CelError(f"cannot convert {values[0]!r} to int") from None
        if name == "string":
            return values[0] if isinstance(values[0], str) else str(values[0]).lower() \
                if isinstance(values[0], bool) else str(values[0])
        raise Unsupported(f"function {name}")
    if name in ("all", "exists", "exists_one"):
        if len(args) != 2 or args[0][0] != "id":
            raise Unsupported(f"{name}() needs a variable and a predicate")
        collection = _eval(target, env)
        items = list(collection.keys()) if isinstance(collection, dict) else collection
        results = [_truth(_eval(args[1], dict(env, **{args[0][1]: item}))) for item in items]
        return all(results) if name == "all" else any(results) if name == "exists" else results.count(True) == 1
    subject = _eval(target, env)
    values = [_eval(a, env) for a in args]
    if name == "size":
        return len(subject)
    if not isinstance(subject, str):
        raise CelError(f"no matching overload for '{name}' on {type_of(subject)}")
    if name == "matches":
        return re.search(values[0], subject) is not None
    if name == "contains":
        return values[0] in subject
    if name == "startsWith":
        return subject.startswith(values[0])
    if name == "endsWith":
        return subject.endswith(values[0])
    raise Unsupported(f"method {name}")


_CACHE: dict[str, object] = {}


def evaluate(rule: str, value) -> bool:
    """True when `value` (as `self`) satisfies `rule`. Raises CelError when
    evaluation fails and Unsupported when the rule is beyond this subset."""
    if rule not in _CACHE:
        try:
            _CACHE[rule] = _Parser(rule).parse()
        except Unsupported as e:
            _CACHE[rule] = e
    parsed = _CACHE[rule]
    if isinstance(parsed, Unsupported):
        raise parsed
    return _truth(_eval(parsed, {"self": value}))
