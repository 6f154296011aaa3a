"""Checks on one value in profile validation: primitive formats, bounds, fixed/pattern values, bindings, references.

https://hl7.org/fhir/R4/validation.html

Also here: `Ctx`, the state of one validation run that every check reports into, the FHIRPath
invariants of an element, and nested resources (contained, Bundle entries, Parameters). The walk
over the element tree that calls these checks is in profile.py; slicing is in slicing.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError
from fhir_server.validation.fhirpath import NATIVE, Invariant

if TYPE_CHECKING:
    from fhir_server.validation.conformance import ConformanceRegistry
    from fhir_server.validation.profile import ProfileValidator
    from fhir_server.validation.rules import Rule, TypeRef

__all__ = [
    "Ctx",
    "as_list",
    "check_binding",
    "check_bounds",
    "check_ext1",
    "check_fixed_pattern",
    "check_identifier",
    "check_invariants",
    "check_nested_resource",
    "check_primitive",
    "check_reference",
    "codings_of",
    "make_issue",
    "matches_pattern",
]

_CONTAINED_ONLY = {"dom-2", "dom-3", "dom-4", "dom-5"}  # trivially true without `contained`


class Ctx:
    """State of one validation run: the registry, the current and root resources, the issues."""

    __slots__ = ("registry", "resource", "root", "issues", "_told")

    def __init__(self, registry: ConformanceRegistry, resource: Any, root: Any) -> None:
        self.registry = registry
        self.resource = resource
        self.root = root
        self.issues: list[dict[str, Any]] = []
        self._told: set[str] = set()

    def add(self, severity: str, code: str, diagnostics: str, path: str | None) -> None:
        self.issues.append(make_issue(severity, code, diagnostics, path))

    def validator(self, url: str) -> ProfileValidator | None:
        """A compiled definition met during the walk; a broken one is reported once, then ignored."""
        try:
            return self.registry.validator(url)  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - a broken profile is the profile's fault, not the resource's
            message = str(exc) if isinstance(exc, FhirError) else f"{type(exc).__name__}: {exc}"
            self.once(f"broken:{url}", "error", "processing", f"Profile {url} cannot be used: {message}", None)
            return None

    def once(self, key: str, severity: str, code: str, diagnostics: str, path: str | None) -> None:
        if key not in self._told:
            self._told.add(key)
            self.add(severity, code, diagnostics, path)


def make_issue(severity: str, code: str, diagnostics: str, path: str | None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if path:
        issue["expression"] = [path]
    return issue


def as_list(value: Any) -> list[Any]:
    """A repeating element's items; malformed shapes are reported by the structural walk."""
    return value if isinstance(value, list) else []


# -- invariants ----------------------------------------------------------------------------------
def check_invariants(invariants: list[Invariant], value: Any, type_path: str, path: str, ctx: Ctx,
                     skip: list[Invariant] | None = None) -> None:
    skipped = {inv.key for inv in skip} if skip else ()
    for inv in invariants:
        if inv.key in skipped:
            continue
        if inv.key in _CONTAINED_ONLY and isinstance(value, dict) and "contained" not in value:
            continue
        if inv.key == "dom-6" and ".contained[" in path:
            continue  # contained resources carry no narrative of their own
        native = NATIVE.get(inv.key)
        holds = native(value, ctx.root) if native else inv.holds(value, type_path, ctx.resource, ctx.root)
        if holds is False:
            severity = "error" if inv.severity == "error" else "warning"
            ctx.add(severity, "invariant", f"{inv.key}: {inv.human}", path)


def check_ext1(value: dict[str, Any], path: str, ctx: Ctx) -> None:
    has_value = any(k.startswith(("value", "_value")) for k in value)
    if bool(value.get("extension")) == has_value:
        ctx.add("error", "invariant", "ext-1: Must have either extensions or value[x], not both", path)


# -- nested resources ----------------------------------------------------------------------------
def check_nested_resource(rule: Rule, value: dict[str, Any], path: str, ctx: Ctx) -> None:
    rtype = value.get("resourceType")
    url = ctx.registry.base_definition_url(rtype) if isinstance(rtype, str) else None
    if url is None:
        ctx.add("error", "structure", f"Unknown resource type {rtype!r}", path)
        return
    codes = {t.code for t in rule.types} - {"Resource", "DomainResource"}
    if codes and rtype not in codes:
        ctx.add("error", "structure", f"A {rtype} is not allowed here (expected {' | '.join(sorted(codes))})", path)
        return
    contained = rule.path.endswith(".contained")
    profiles = [p for t in rule.types for p in t.profiles]
    if not profiles and not contained:
        # A Bundle entry or a Parameters resource stands alone: its own claims apply, as on a write.
        meta = value.get("meta")
        claimed = as_list(meta.get("profile")) if isinstance(meta, dict) else []
        profiles = [p for p in claimed if isinstance(p, str) and ctx.registry.structure_definition(p) is not None]
    validators = [v for p in profiles if (v := ctx.validator(p)) is not None and v.type == rtype]
    base = ctx.validator(url)
    if not validators and base is None:
        return
    # %rootResource is the container only for contained resources; an entry is its own root.
    outer = ctx.resource, ctx.root
    ctx.resource, ctx.root = value, (ctx.root if contained else value)
    try:
        _check_any(validators or [base] if base is not None else validators, value, path, ctx)
    finally:
        ctx.resource, ctx.root = outer


def _check_any(validators: list[ProfileValidator], value: dict[str, Any], path: str, ctx: Ctx) -> None:
    """Several type profiles mean "any of them": the issues of the best-conforming one are kept."""
    if len(validators) == 1:
        validators[0].check_resource(value, path, ctx)
        return
    best: list[dict[str, Any]] | None = None
    for validator in validators:
        sub = Ctx(ctx.registry, ctx.resource, ctx.root)
        validator.check_resource(value, path, sub)
        errors = sum(1 for i in sub.issues if i["severity"] == "error")
        if best is None or errors < sum(1 for i in best if i["severity"] == "error"):
            best = sub.issues
        if not errors:
            break
    ctx.issues.extend(best or [])


# -- primitives ----------------------------------------------------------------------------------
_DATE = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_FULL_DATE = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
_FORMATS = {
    "date": re.compile(_DATE),
    "dateTime": re.compile(f"{_DATE}(T{_TIME}{_TZ})?"),
    "instant": re.compile(f"{_FULL_DATE}T{_TIME}{_TZ}"),
    "time": re.compile(_TIME),
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "id": re.compile(r"[A-Za-z0-9\-.]{1,64}"),
    "oid": re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
    "uuid": re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    "uri": re.compile(r"\S*"), "url": re.compile(r"\S*"), "canonical": re.compile(r"\S*"),
}  # fmt: skip
_BASE64 = re.compile(r"[0-9a-zA-Z+/]*={0,2}")
_INTEGER_MIN = {"integer": -(2**31), "positiveInt": 1, "unsignedInt": 0}


def check_primitive(code: str, value: Any, path: str, ctx: Ctx, max_length: int | None) -> bool:
    if code == "boolean":
        ok = isinstance(value, bool)
    elif code in _INTEGER_MIN:
        ok = isinstance(value, int) and not isinstance(value, bool) and _INTEGER_MIN[code] <= value < 2**31
    elif code == "decimal":
        ok = isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    elif not isinstance(value, str):
        ok = False
    elif code == "xhtml":
        ok = value.lstrip().startswith("<div")
    elif code == "base64Binary":
        # The spec's regex backtracks badly on megabyte attachments; this is the same language.
        packed = "".join(value.split())
        ok = len(packed) % 4 == 0 and _BASE64.fullmatch(packed) is not None
    else:
        pattern = _FORMATS.get(code)
        ok = value.strip() != "" if pattern is None else pattern.fullmatch(value) is not None
        if ok and max_length is not None and len(value) > max_length:
            ctx.add("error", "value", f"Value is longer than the maximum length {max_length}", path)
    if not ok:
        ctx.add("error", "value", f"{_show(value)} is not a valid {code}", path)
    return ok


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _comparable(value: Any, bound: Any) -> tuple[Any, Any] | None:
    """Both sides as comparable values, or None (different units, precisions or kinds)."""
    if isinstance(value, dict) and isinstance(bound, dict):
        if (value.get("system"), value.get("code")) != (bound.get("system"), bound.get("code")):
            return None  # needs UCUM conversion
        value, bound = value.get("value"), bound.get("value")
    if isinstance(value, bool) or isinstance(bound, bool):
        return None
    if isinstance(value, int | Decimal) and isinstance(bound, int | Decimal):
        return value, bound
    if isinstance(value, str) and isinstance(bound, str) and len(value) == len(bound):
        return value, bound  # ISO dates and times of one precision order as text
    return None


def check_bounds(rule: Rule, value: Any, path: str, ctx: Ctx) -> None:
    for bound, below in ((rule.min_value, True), (rule.max_value, False)):
        pair = _comparable(value, bound) if bound is not None else None
        if pair is not None and (pair[0] < pair[1] if below else pair[0] > pair[1]):
            shown = bound.get("value") if isinstance(bound, dict) else bound
            ctx.add("error", "value", f"Value is {'below the minimum' if below else 'above the maximum'} {shown}",
                    path)


# -- fixed and pattern values --------------------------------------------------------------------
def matches_pattern(pattern: Any, value: Any) -> bool:
    """FHIR pattern[x]: every element of the pattern is present, with equal values, in the instance."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(matches_pattern(p, value.get(k)) for k, p in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(matches_pattern(p, v) for v in value) for p in pattern)
    if isinstance(pattern, bool) or isinstance(value, bool):
        return value is pattern
    return value is not None and value == pattern


def check_fixed_pattern(rule: Rule, value: Any, path: str, ctx: Ctx) -> None:
    if rule.fixed is not None and value != rule.fixed:
        ctx.add("error", "value", f"Value must be exactly {_show(rule.fixed)}", path)
    if rule.pattern is not None and not matches_pattern(rule.pattern, value):
        ctx.add("error", "value", f"Value must match the pattern {_show(rule.pattern)}", path)


# -- bindings ------------------------------------------------------------------------------------
def _coding(value: Any) -> list[tuple[str | None, str]]:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        return []
    system = value.get("system")
    return [(system if isinstance(system, str) else None, value["code"])]


def codings_of(code: str, value: Any) -> list[tuple[str | None, str]] | None:
    """The (system, code) pairs a value of type `code` carries; None for a type that has none."""
    if code in ("code", "string", "uri", "canonical"):
        return [(None, value)] if isinstance(value, str) else []
    if code == "Coding" or code == "Quantity":
        return _coding(value)
    if code == "CodeableConcept":
        return [pair for c in as_list(value.get("coding")) for pair in _coding(c)]
    return None


def check_binding(rule: Rule, code: str, value: Any, path: str, ctx: Ctx) -> None:
    if rule.binding is None:
        return
    codings = codings_of(code, value)
    strength, vs = rule.binding
    if codings == [] and code in ("CodeableConcept", "Coding") and strength == "required":
        # Text alone carries no concept, and a required binding demands one.
        ctx.add("error", "code-invalid", f"No code given; a code from the required value set {vs} is needed", path)
        return
    if not codings:
        return
    from fhir_server.validation.terminology import value_set_membership

    members = value_set_membership(ctx.registry, vs)
    if members is None:
        ctx.once(f"vs:{vs}", "information", "not-supported",
                 f"ValueSet {vs} is not available on this server: its {strength} binding is not checked", path)
        return
    if any(members.contains(system, c) for system, c in codings):
        return
    shown = ", ".join(f"{s}#{c}" if s else c for s, c in codings)
    ctx.add("error" if strength == "required" else "warning", "code-invalid",
            f"{shown} is not in the {strength} value set {vs}", path)


# -- references and identifiers ------------------------------------------------------------------
def _allowed_targets(targets: tuple[str, ...], ctx: Ctx) -> frozenset[str] | None:
    def make() -> frozenset[str] | None:
        names = set()
        for url in targets:
            sd = ctx.registry.structure_definition(url)
            name = sd.get("type") if sd else None
            if not name or name == "Resource":
                return None
            names.add(name)
        return frozenset(names)

    return ctx.registry.cached("targets", "|".join(targets), make)  # type: ignore[no-any-return]


def _reference_type(ref: str, value: dict[str, Any], ctx: Ctx) -> str | None:
    if ref.startswith("#"):
        for res in as_list(ctx.resource.get("contained")) if isinstance(ctx.resource, dict) else []:
            if isinstance(res, dict) and res.get("id") == ref[1:]:
                found = res.get("resourceType")
                return found if isinstance(found, str) else None
        return None
    parts = ref.split("?", 1)[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return parts[-2]
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def check_reference(types: list[TypeRef], value: dict[str, Any], path: str, ctx: Ctx) -> None:
    targets = tuple(url for t in types if t.code == "Reference" for url in t.targets)
    ref = value.get("reference")
    if not targets or not isinstance(ref, str):
        return
    allowed = _allowed_targets(targets, ctx)
    rtype = _reference_type(ref, value, ctx)
    if allowed is None or rtype is None:
        return
    if ctx.registry.base_definition_url(rtype) is None:
        if ":" not in ref:
            ctx.add("error", "structure", f"Reference '{ref}' names no known resource type", path)
        return
    if rtype not in allowed:
        ctx.add("error", "structure", f"A reference to {rtype} is not allowed here (expected "
                f"{' | '.join(sorted(allowed))})", path)


_fr_check: Any = None


def check_identifier(value: dict[str, Any], path: str, ctx: Ctx) -> None:
    global _fr_check
    if _fr_check is None:
        try:
            from fhir_server.validation import fr_identifiers
        except ImportError:
            _fr_check = False
        else:
            _fr_check = fr_identifiers.check_identifier
    if not _fr_check or not isinstance(value.get("system"), str) or not isinstance(value.get("value"), str):
        return
    codings = as_list(value["type"].get("coding")) if isinstance(value.get("type"), dict) else []
    type_code = next((c.get("code") for c in codings if isinstance(c, dict) and c.get("code")), None)
    for issue in _fr_check(value["system"], value["value"], type_code):
        issue = dict(issue)
        issue["expression"] = [_join(path, e) for e in issue.get("expression") or ["value"]]
        ctx.issues.append(issue)


def _join(path: str, expression: str) -> str:
    # fr_identifiers may name the element relative to the Identifier or as `Identifier.value`.
    if expression.startswith("Identifier."):
        expression = expression[len("Identifier.") :]
    return expression if expression.startswith(path) else f"{path}.{expression}"
