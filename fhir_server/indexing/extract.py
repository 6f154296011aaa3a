"""Evaluation of search parameter expressions (a FHIRPath subset, fhirpathpy for the rest).

https://hl7.org/fhir/R4/fhirpath.html and https://hl7.org/fhir/R4/searchparameter.html

Nearly all R4 search expressions (1,500 of 1,770 union members) are plain paths, and almost
all the others use only `ofType(T)`, `as T`, `where(resolve() is T)`, `where(field='x')` and
`[n]`. Those are compiled here into a list of steps walked directly over the JSON dicts; it is
one to two orders of magnitude faster than a general FHIRPath engine, and indexing is the
write path's hot spot. Anything else falls back to `fhirpathpy`, compiled once. Results are
`(value, type_hint)` pairs: the hint is the choice-type suffix (`valueQuantity` -> `Quantity`)
when the walk saw one, else None and the value's shape decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Extractor", "Node", "Union", "compile_expression", "split_union"]

Node = tuple[Any, str | None]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_OFTYPE = re.compile(r"^(?:ofType|as)\((\w+)\)$")
_RESOLVE = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_WHERE_EQ = re.compile(r"^where\((\w+) ?= ?'([^']*)'\)$")
_AS = re.compile(r"^(.+) as (\w+)$")


def _model() -> dict[str, Any]:
    from fhirpathpy.models import models

    return dict(models["r4"])


@lru_cache(maxsize=1)
def _choices() -> tuple[frozenset[str], frozenset[str]]:
    """(names of choice elements, type suffixes they may carry), from the R4 model."""
    paths: dict[str, list[str]] = _model()["choiceTypePaths"]
    names = frozenset(p.rsplit(".", 1)[-1] for p in paths)
    suffixes = frozenset(t[0].upper() + t[1:] for types in paths.values() for t in types)
    return names, suffixes


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # field | index | oftype | resolve | eq
    arg: str
    value: str = ""


def _split_dots(expr: str) -> list[str] | None:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        if ch == "." and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts if depth == 0 else None


def _unwrap(expr: str) -> str:
    """`(A.b.ofType(C)).text` -> `A.b.ofType(C).text`, `(A.b as C)` -> `A.b as C`."""
    expr = expr.strip()
    while expr.startswith("("):
        depth, i = 0, 0
        for i, ch in enumerate(expr):  # noqa: B007 - i is the closing parenthesis after the loop
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                break
        inner, rest = expr[1:i], expr[i + 1 :]
        if rest and not rest.startswith("."):
            return expr
        if " as " in inner and rest:
            m = _AS.match(inner.strip())
            if not m:
                return expr
            inner = f"{m.group(1)}.ofType({m.group(2)})"
        expr = inner.strip() + rest
    return expr


def parse_steps(expr: str) -> tuple[str | None, list[Step]] | None:
    """(root type or None for a relative path, steps), or None when outside the fast subset."""
    expr = _unwrap(expr)
    m = _AS.match(expr)
    if m:
        expr = f"{_unwrap(m.group(1))}.ofType({m.group(2)})"
    parts = _split_dots(expr)
    if not parts:
        return None
    root = None
    if parts[0][:1].isupper() and _IDENT.match(parts[0]):
        root, parts = parts[0], parts[1:]
    steps: list[Step] = []
    for part in parts:
        part = part.strip()
        if _IDENT.match(part):
            steps.append(Step("field", part))
        elif m := _INDEXED.match(part):
            steps += [Step("field", m.group(1)), Step("index", m.group(2))]
        elif m := _OFTYPE.match(part):
            steps.append(Step("oftype", m.group(1)))
        elif m := _RESOLVE.match(part):
            steps.append(Step("resolve", m.group(1)))
        elif m := _WHERE_EQ.match(part):
            steps.append(Step("eq", m.group(1), m.group(2)))
        else:
            return None
    return root, steps


def _field(nodes: list[Node], name: str) -> list[Node]:
    names, suffixes = _choices()
    out: list[Node] = []
    for value, _hint in nodes:
        if not isinstance(value, dict):
            continue
        hint = None
        child = value.get(name)
        if child is None and name in names:
            for key, candidate in value.items():
                if key.startswith(name) and key[len(name) :] in suffixes:
                    child, hint = candidate, key[len(name) :]
                    break
        if child is None:
            continue
        if isinstance(child, list):
            out.extend((c, hint) for c in child if c is not None)
        else:
            out.append((child, hint))
    return out


_SHAPES: dict[str, Callable[[Any], bool]] = {
    "codeableconcept": lambda v: isinstance(v, dict) and ("coding" in v or "text" in v),
    "reference": lambda v: isinstance(v, dict) and ("reference" in v or "identifier" in v),
    "quantity": lambda v: isinstance(v, dict) and "value" in v and "low" not in v,
    "period": lambda v: isinstance(v, dict) and ("start" in v or "end" in v),
    "range": lambda v: isinstance(v, dict) and ("low" in v or "high" in v),
    "identifier": lambda v: isinstance(v, dict) and "value" in v,
    "boolean": lambda v: isinstance(v, bool),
}


def _of_type(nodes: list[Node], type_name: str) -> list[Node]:
    wanted = type_name.lower()
    out: list[Node] = []
    for value, hint in nodes:
        if hint is not None:
            if hint.lower() == wanted:
                out.append((value, hint))
        elif wanted in _SHAPES:
            if _SHAPES[wanted](value):
                out.append((value, type_name))
        elif isinstance(value, str):
            out.append((value, type_name))
    return out


def _reference_type(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or ref.startswith("#"):
        return value.get("type") if isinstance(value, dict) else None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


def walk(steps: list[Step], start: list[Node]) -> list[Node]:
    nodes = start
    for step in steps:
        if step.kind == "field":
            nodes = _field(nodes, step.arg)
        elif step.kind == "index":
            i = int(step.arg)
            nodes = nodes[i : i + 1]
        elif step.kind == "oftype":
            nodes = _of_type(nodes, step.arg)
        elif step.kind == "resolve":
            nodes = [n for n in nodes if _reference_type(n[0]) == step.arg]
        else:
            nodes = [n for n in nodes if isinstance(n[0], dict) and n[0].get(step.arg) == step.value]
        if not nodes:
            break
    return nodes


def split_union(expression: str) -> list[str]:
    """`A.b | A.c` -> [`A.b`, `A.c`], leaving unions inside parentheses alone."""
    parts, depth, cur = [], 0, ""
    for ch in expression:
        depth += (ch == "(") - (ch == ")")
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


class Union:
    """Several expressions whose results are concatenated (the FHIRPath `|` at top level)."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = [compile_expression(p) for p in parts]

    def __call__(self, data: dict[str, Any]) -> list[Node]:
        out: list[Node] = []
        for part in self.parts:
            out.extend(part(data))
        return out


class Extractor:
    """A compiled expression: call it on a resource (or element) dict to get its nodes."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._fast = parse_steps(expression)
        self._slow: Callable[..., list[Any]] | None = None
        if self._fast is None:
            import fhirpathpy

            self._slow = fhirpathpy.compile(expression, model=_model())

    @property
    def is_fast(self) -> bool:
        return self._fast is not None

    def __call__(self, data: dict[str, Any]) -> list[Node]:
        if self._fast is not None:
            root, steps = self._fast
            if root is not None and root not in ("Resource", "DomainResource") and data.get("resourceType") != root:
                return []
            return walk(steps, [(data, None)])
        assert self._slow is not None
        try:
            result = self._slow(data)
        except Exception:  # noqa: BLE001 - a failing expression indexes nothing, never fails a write
            return []
        return [(_plain(v), None) for v in result if v is not None]


def _plain(value: Any) -> Any:
    if isinstance(value, (dict, list, str, bool, int, float)) or value is None:
        return value
    return str(value)  # fhirpathpy's FP_DateTime and friends print as their FHIR text


@lru_cache(maxsize=8192)
def compile_expression(expression: str) -> Extractor | Union:
    parts = split_union(expression)
    return Union(parts) if len(parts) > 1 else Extractor(expression)
