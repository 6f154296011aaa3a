"""FHIRPath invariants for the profile validator, each expression compiled once with fhirpathpy.

https://hl7.org/fhir/R4/conformance-rules.html#constraints

A few base invariants are implemented natively (`NATIVE`, at the end of this module).

fhirpathpy lacks a few functions the R4 invariants use (`hasValue()`, `htmlChecks()`,
`conformsTo()`); they are supplied here. An expression that fhirpathpy still cannot parse or
evaluate is skipped, never reported as a violation, and recorded in `SKIPPED` (documented in
docs/validation.md) so a gap is visible rather than silent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NATIVE", "Invariant", "SKIPPED", "compile_invariant", "evaluate_path", "extension_call", "split_path"]

# Expression text -> reason it could not be used. Shared by all registries: it only records gaps.
SKIPPED: dict[str, str] = {}

_lock = threading.Lock()
_compiled: dict[str, Callable[..., Any] | None] = {}
_model: dict[str, Any] | None = None


def _has_value(inputs: list[Any]) -> bool:
    # A primitive whose JSON value is present; complex values and extension-only primitives are not.
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


def _always_true(inputs: list[Any], *args: Any) -> bool:
    return True


_USER_FUNCTIONS: dict[str, Any] = {
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    # Narrative XHTML safety is checked structurally elsewhere; the invariant itself is not
    # expressible without an HTML parser.
    "htmlChecks": {"fn": _always_true, "arity": {0: []}},
}
_OPTIONS: dict[str, Any] = {"userInvocationTable": _USER_FUNCTIONS, "traceFn": lambda *_: None}


def _get_model() -> dict[str, Any]:
    global _model
    if _model is None:
        from fhirpathpy.models import models

        _model = models["r4"]
    return _model


def _compile(expression: str) -> Callable[..., Any] | None:
    with _lock:
        if expression in _compiled:
            return _compiled[expression]
    try:
        import fhirpathpy

        fn: Callable[..., Any] | None = fhirpathpy.compile(expression, _get_model(), _OPTIONS)
    except Exception as exc:  # noqa: BLE001 - any parser failure means "cannot evaluate"
        SKIPPED[expression] = f"parse: {type(exc).__name__}: {exc}"[:200]
        fn = None
    with _lock:
        _compiled[expression] = fn
    return fn


@dataclass(slots=True)
class Invariant:
    """One constraint of an element: FHIRPath that must be true on every instance."""

    key: str
    severity: str
    human: str
    expression: str
    fn: Callable[..., Any] | None = field(default=None, repr=False)
    # Element names the expression can reach from its context; None if it can reach anything else.
    names: frozenset[str] | None = field(default=None, repr=False)
    on_empty: dict[str, bool | None] = field(default_factory=dict, repr=False)

    def holds(self, value: Any, type_path: str, resource: Any, root: Any) -> bool | None:
        """True/False as evaluated; None when fhirpathpy cannot evaluate the expression."""
        if self.fn is None or self.expression in SKIPPED:
            return None
        if self.names is not None and isinstance(value, dict) and not _mentions(value, self.names):
            # The instance holds none of the elements the expression reads, so it evaluates as on an
            # empty element: compute that once per type (most `x.exists() implies ...` rules).
            if type_path not in self.on_empty:
                self.on_empty[type_path] = self._evaluate({}, type_path, resource, root)
            return self.on_empty[type_path]
        return self._evaluate(value, type_path, resource, root)

    def _evaluate(self, value: Any, type_path: str, resource: Any, root: Any) -> bool | None:
        assert self.fn is not None
        from fhirpathpy.engine.nodes import ResourceNode

        node = ResourceNode.create_node(value, type_path)  # type: ignore[no-untyped-call]
        variables = {"context": node, "resource": resource, "rootResource": root}
        if "%" in self.expression:
            # Typed nodes, so that `%resource.type()` and `%resource.ofType(...)` work.
            for name in ("resource", "rootResource"):
                if isinstance(variables[name], dict) and isinstance(variables[name].get("resourceType"), str):
                    variables[name] = ResourceNode.create_node(  # type: ignore[no-untyped-call]
                        variables[name], variables[name]["resourceType"])
        try:
            result = self.fn(node, variables)
        except Exception as exc:  # noqa: BLE001 - engine gaps surface as arbitrary exceptions
            # A missing function fails on every instance: stop trying. Anything else may be this
            # instance's fault (a malformed date reported elsewhere), so only this evaluation is lost.
            if "Not implemented" in str(exc) or isinstance(exc, TypeError):
                SKIPPED[self.expression] = f"eval: {type(exc).__name__}: {exc}"[:200]
            return None
        # FHIRPath: an empty result is not a failure; only an explicit false is.
        if not result:
            return True
        return bool(result != [False])


def compile_invariant(constraint: dict[str, Any]) -> Invariant | None:
    expression = constraint.get("expression")
    if not expression:
        return None
    return Invariant(
        key=constraint.get("key", "?"),
        severity=constraint.get("severity", "error"),
        human=constraint.get("human", ""),
        expression=expression,
        fn=_compile(expression),
        names=_names(expression),
    )


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Anything that reads beyond the context element (or depends on time) defeats the shortcut.
_GLOBAL = re.compile(r"%|\$this|children\(|descendants\(|resolve\(|today\(|now\(|hasValue\(|repeat\(")


def _names(expression: str) -> frozenset[str] | None:
    if _GLOBAL.search(expression) or "`" in expression:
        return None
    return frozenset(_IDENT.findall(_STRING.sub("''", expression)))


def _mentions(value: dict[str, Any], names: frozenset[str]) -> bool:
    for key in value:
        name = key[1:] if key.startswith("_") else key
        if name in names:
            return True
        # A choice element (`valueString`) is read by its stem (`value`).
        for i in range(1, len(name)):
            if name[i].isupper():
                if name[:i] in names:
                    return True
                break
    return False


_EXTENSION_CALL = re.compile(r"extension\(\s*'([^']*)'\s*\)")
_OF_TYPE = re.compile(r"ofType\(\s*([A-Za-z]+)\s*\)")


def split_path(path: str) -> list[str]:
    """The steps of a discriminator path; dots inside `extension('http://...')` do not split."""
    parts, depth, current = [], 0, ""
    for ch in path:
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip() not in ("", "$this")]


def extension_call(step: str) -> str | None:
    """The url of an `extension('url')` step, else None."""
    match = _EXTENSION_CALL.fullmatch(step)
    return match.group(1) if match else None


def evaluate_path(value: Any, path: str) -> list[Any]:
    """Values at a discriminator path: names, `extension('url')`, `ofType(T)`; `$this` is the value.

    Lists are flattened at every step, as FHIRPath navigation does. A choice element is reached by
    its stem (`value` finds `valueCoding`), narrowed by a following `ofType(Coding)`. Other
    functions are not handled: callers treat a path they cannot follow as unknown.
    """
    current = value if isinstance(value, list) else [value]
    parts = split_path(path)
    for n, part in enumerate(parts):
        if _OF_TYPE.fullmatch(part):
            continue  # applied with the name before it
        url = extension_call(part)
        following = _OF_TYPE.fullmatch(parts[n + 1]) if n + 1 < len(parts) else None
        step: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if url is not None:
                step.extend(e for e in item.get("extension") or [] if isinstance(e, dict) and e.get("url") == url)
                continue
            for key in _keys_for(item, part, following.group(1) if following else None):
                child = item[key]
                step.extend(child if isinstance(child, list) else [child])
        current = step
    return current


def _keys_for(item: dict[str, Any], name: str, type_name: str | None) -> list[str]:
    if name in item and type_name is None:
        return [name]
    wanted = (type_name[0].upper() + type_name[1:]) if type_name else None
    return [k for k in item if k.startswith(name) and k[len(name) : len(name) + 1].isupper()
            and (wanted is None or k[len(name) :] == wanted)]


# -- base invariants implemented natively -------------------------------------------------------
# Either fhirpathpy cannot evaluate them (dom-3, rng-2, txt-*) or they run on so many elements
# (ref-1 on every Reference) that the FHIRPath engine would dominate validation time.
def _ref1(value: Any, root: Any) -> bool:
    """ref-1 natively (it runs on every Reference): a local reference names a contained resource."""
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#") or ref == "#":
        return True
    contained = root.get("contained") if isinstance(root, dict) else None
    contained = contained if isinstance(contained, list) else []
    return any(isinstance(c, dict) and c.get("id") == ref[1:] for c in contained)


# Narrative XHTML may use the basic HTML formatting elements only (R4 narrative.html#Narrative):
# no scripts, forms, frames, objects, head/body, external links or event attributes.
_XHTML_ELEMENTS = frozenset(
    "a abbr acronym address b bdo big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 "
    "h4 h5 h6 hr i img kbd li map area ol p pre q samp small span strong sub sup table tbody td tfoot th thead tr "
    "tt ul var".split()
)
_TAG = re.compile(r"<\s*/?\s*([A-Za-z][\w:.-]*)([^>]*)>")
_EVENT_ATTRIBUTE = re.compile(r"(^|\s)on[a-z]+\s*=", re.IGNORECASE)
_SCRIPT_URL = re.compile(r"(href|src)\s*=\s*[\"']?\s*(javascript|vbscript|data):", re.IGNORECASE)


def _xhtml_safe(div: Any, root: Any = None) -> bool:
    """txt-1 natively: only basic formatting elements, no event attributes nor script URLs."""
    if not isinstance(div, str):
        return True
    for match in _TAG.finditer(div):
        name = match.group(1).split(":")[-1].lower()
        if name not in _XHTML_ELEMENTS:
            return False
        attributes = match.group(2)
        if _EVENT_ATTRIBUTE.search(attributes) or _SCRIPT_URL.search(attributes):
            return False
    return True


def _xhtml_has_content(div: Any, root: Any = None) -> bool:
    """txt-2 natively: some non-whitespace text, or an image."""
    if not isinstance(div, str):
        return True
    return bool(_TAG.sub("", div).strip()) or "<img" in div.lower()


def _rng2(value: Any, root: Any = None) -> bool | None:
    """rng-2 natively (fhirpathpy cannot compare Quantities): low <= high when both are comparable."""
    low, high = (value.get("low"), value.get("high")) if isinstance(value, dict) else (None, None)
    if not isinstance(low, dict) or not isinstance(high, dict):
        return True
    lv, hv = low.get("value"), high.get("value")
    if lv is None or hv is None or isinstance(lv, bool) or isinstance(hv, bool):
        return True
    if (low.get("code"), low.get("system")) != (high.get("code"), high.get("system")):
        return None  # different units: needs UCUM conversion
    try:
        return bool(lv <= hv)
    except TypeError:
        return None


def _dom3(resource: Any, root: Any = None) -> bool:
    """dom-3 natively (fhirpathpy cannot evaluate it): every contained resource is referenced."""
    if not isinstance(resource, dict):
        return True
    local: set[str] = set()
    stack: list[Any] = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.startswith("#"):
            local.add(item)
    if "#" in local:
        return True
    contained = resource.get("contained")
    items = contained if isinstance(contained, list) else []
    return all(f"#{c.get('id')}" in local for c in items if isinstance(c, dict))


NATIVE: dict[str, Callable[[Any, Any], bool | None]] = {
    "dom-3": _dom3,
    "ref-1": _ref1,
    "rng-2": _rng2,
    "txt-1": _xhtml_safe,
    "txt-2": _xhtml_has_content,
}
