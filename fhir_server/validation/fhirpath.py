"""FHIRPath invariants for the profile validator, each expression compiled once with fhirpathpy.

https://hl7.org/fhir/R4/conformance-rules.html#constraints

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

__all__ = ["Invariant", "SKIPPED", "compile_invariant", "evaluate_path"]

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


def evaluate_path(value: Any, path: str) -> list[Any]:
    """Values at a simple dotted path (slicing discriminators); `$this` is the value itself.

    Lists are flattened at every step, as FHIRPath navigation does. Function calls other than
    `$this` are not handled here: callers treat a discriminator they cannot follow as unknown.
    """
    current = value if isinstance(value, list) else [value]
    for part in path.split("."):
        if part == "$this" or not part:
            continue
        step: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                child = item[part]
                step.extend(child if isinstance(child, list) else [child])
        current = step
    return current
