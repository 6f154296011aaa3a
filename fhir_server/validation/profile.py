"""Compiled profile validators: a StructureDefinition snapshot turned once into a tree of element rules.

https://hl7.org/fhir/R4/validation.html

`ProfileValidator` walks a resource (a plain dict, decimals as `decimal.Decimal`) against the rules:
cardinality, JSON shape, primitive formats, choice types, reference targets, fixed/pattern values,
slicing, extensions by url, bindings and FHIRPath invariants. Complex datatypes not expanded in the
snapshot are checked by the datatype's own (cached) validator, so one Identifier rule set serves every
profile. Each issue names the instance path with real indexes (`Patient.identifier[1].system`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError
from fhir_server.validation.fhirpath import (
    NATIVE,
    Invariant,
    compile_invariant,
    evaluate_path,
    extension_call,
    split_path,
)

if TYPE_CHECKING:
    from fhir_server.validation.conformance import ConformanceRegistry

__all__ = ["ProfileValidator", "Rule", "validate_resource"]

CORE = "http://hl7.org/fhir/StructureDefinition/"
_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_SYSTEM_TYPES = {"System.String": "string", "System.Boolean": "boolean", "System.Integer": "integer",
                 "System.Decimal": "decimal", "System.Date": "date", "System.DateTime": "dateTime",
                 "System.Time": "time"}  # fmt: skip
# Checked by the walk itself: through fhirpathpy, on every element, they would dominate validation time.
_STRUCTURAL = {"ele-1", "ext-1"}
_CONTAINED_ONLY = {"dom-2", "dom-3", "dom-4", "dom-5"}  # trivially true without `contained`
_EXTENSIONS = ("extension", "modifierExtension")


@dataclass(slots=True, eq=False)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class Rule:
    """One element of the snapshot, with its children and slices."""

    id: str
    path: str
    name: str
    min: int
    max: int | None
    array: bool
    types: list[TypeRef]
    choice: bool = False
    fixed: Any = None
    pattern: Any = None
    binding: tuple[str, str] | None = None
    max_length: int | None = None
    min_value: Any = None
    max_value: Any = None
    invariants: list[Invariant] = field(default_factory=list)
    children: list[Rule] = field(default_factory=list)
    slicing: Slicing | None = None
    slices: list[Rule] = field(default_factory=list)
    slice_name: str | None = None
    content_ref: str | None = None
    child_names: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.name}:{self.slice_name}" if self.slice_name else self.name


def _type_ref(t: dict[str, Any]) -> TypeRef:
    code = t.get("code", "")
    if code.startswith("http://hl7.org/fhirpath/"):
        ext = next((e.get("valueUrl") for e in t.get("extension", []) if e.get("url") == _FHIR_TYPE_EXT), None)
        code = ext or _SYSTEM_TYPES.get(code.rsplit("/", 1)[-1], "string")
    return TypeRef(code, tuple(t.get("profile") or ()), tuple(t.get("targetProfile") or ()))


def _rule(el: dict[str, Any]) -> Rule:
    last = el["id"].rsplit(".", 1)[-1]
    name, _, slice_name = last.partition(":")
    max_ = el.get("max", "*")
    base_max = el.get("base", {}).get("max", max_)
    rule = Rule(
        id=el["id"],
        path=el.get("base", {}).get("path") or el["path"],
        name=name[:-3] if name.endswith("[x]") else name,
        min=int(el.get("min", 0)),
        max=None if max_ == "*" else int(max_),
        array=base_max != "1" and base_max != "0",
        types=[_type_ref(t) for t in el.get("type", [])],
        choice=name.endswith("[x]"),
        slice_name=slice_name or None,
        content_ref=el.get("contentReference"),
        max_length=el.get("maxLength"),
    )
    for key, value in el.items():
        if key.startswith("fixed"):
            rule.fixed = value
        elif key.startswith("pattern"):
            rule.pattern = value
        elif key.startswith("minValue"):
            rule.min_value = value
        elif key.startswith("maxValue"):
            rule.max_value = value
    if el.get("base", {}).get("path") == "Resource.id":
        # The JSON type of Resource.id is string, but its content must be a FHIR id.
        rule.types = [TypeRef("id")]
    binding = el.get("binding")
    if binding and binding.get("valueSet") and binding.get("strength") in ("required", "extensible"):
        rule.binding = (binding["strength"], binding["valueSet"])
    rule.invariants = [
        inv
        for c in el.get("constraint", [])
        if c.get("key") not in _STRUCTURAL and (inv := compile_invariant(c)) is not None
    ]
    if el.get("slicing"):
        rule.slicing = Slicing.from_json(el["slicing"])
    return rule


class ProfileValidator:
    """The compiled form of one StructureDefinition; thread-safe, reusable."""

    def __init__(self, registry: ConformanceRegistry, url: str) -> None:
        sd = registry.structure_definition(url)
        elements = registry.snapshot(url)
        assert sd is not None and elements
        self.registry = registry
        self.url = url
        self.type = sd.get("type") or elements[0]["path"]
        self.kind = sd.get("kind", "")
        self.by_id: dict[str, Rule] = {}
        # A contentReference names the element as its type defines it, not as this profile
        # constrained it, so a profile resolves it in the compiled base definition.
        base = None
        if sd.get("derivation") == "constraint" and url != CORE + self.type:
            base = registry.validator(CORE + self.type)
        self.root = self._build(elements, self.by_id, base.by_id if base is not None else None)

    @staticmethod
    def _build(elements: list[dict[str, Any]], by_id: dict[str, Rule], base: dict[str, Rule] | None) -> Rule:
        root = by_id.setdefault(elements[0]["id"], _rule(elements[0]))
        for el in elements[1:]:
            rule = _rule(el)
            by_id[el["id"]] = rule
            parent_id, _, last = el["id"].rpartition(".")
            name, _, slice_name = last.partition(":")
            if slice_name:
                owner = by_id.get(f"{parent_id}.{name}")
                if owner is not None:
                    owner.slices.append(rule)
                    continue
            parent = by_id.get(parent_id)
            if parent is not None:
                parent.children.append(rule)
        for rule in by_id.values():
            if rule.content_ref and not rule.children:
                target = (base if base is not None else by_id).get(rule.content_ref.split("#")[-1])
                if target is not None:
                    rule.children, rule.invariants = target.children, rule.invariants + target.invariants
            rule.child_names = frozenset(c.name for c in rule.children if not c.choice)
        return root

    # -- entry points ------------------------------------------------------------------------
    def validate(self, resource: dict[str, Any], path: str | None = None) -> list[dict[str, Any]]:
        ctx = Ctx(self.registry, resource, resource)
        self.check_resource(resource, path or self.type, ctx)
        return ctx.issues

    def check_resource(self, resource: dict[str, Any], path: str, ctx: Ctx) -> None:
        if self.kind == "resource" and resource.get("resourceType") != self.type:
            ctx.add("error", "structure", f"Expected a {self.type} resource, found "
                    f"{resource.get('resourceType')!r} ({self.url})", path)
            return
        _check_invariants(self.root.invariants, resource, self.type, path, ctx)
        walk_object(self.root, resource, path, ctx, resource=self.kind == "resource")


# -- the walk ------------------------------------------------------------------------------------
def walk_object(rule: Rule, obj: Any, path: str, ctx: Ctx, resource: bool = False) -> None:
    if not isinstance(obj, dict):
        ctx.add("error", "structure", "Expected a JSON object", path)
        return
    seen: set[str] = {"resourceType", "fhir_comments"} if resource else {"fhir_comments"}
    for child in rule.children:
        items = collect(child, rule, obj, path, ctx, seen)
        check_items(child, items, path, ctx)
    for key in obj:
        if key not in seen:
            ctx.add("error", "structure", f"Unknown element '{key}'", f"{path}.{key.lstrip('_')}")


Item = tuple[Any, Any, str, str | None]  # value, primitive extension object, path, type code


def collect(child: Rule, parent: Rule, obj: dict[str, Any], path: str, ctx: Ctx, seen: set[str]) -> list[Item]:
    if not child.choice:
        return _items(child, obj, child.name, path, ctx, seen, child.types[0].code if len(child.types) == 1 else None)
    allowed = {_suffix(t.code): t.code for t in child.types}
    items: list[Item] = []
    for key in list(obj):
        name = key.lstrip("_")
        if name in parent.child_names or not name.startswith(child.name) or name in seen:
            continue
        suffix = name[len(child.name) :]
        if not suffix[:1].isupper():
            continue
        if suffix not in allowed:
            seen.add(key)
            ctx.add("error", "structure", f"Type {suffix} ({name}) is not allowed for {child.name}[x]",
                    f"{path}.{child.name}")
            continue
        if key.startswith("_") and name in obj:
            continue
        items += _items(child, obj, name, path, ctx, seen, allowed[suffix])
    return items


def _suffix(code: str) -> str:
    return code[0].upper() + code[1:]


def _items(
    child: Rule, obj: dict[str, Any], key: str, path: str, ctx: Ctx, seen: set[str], code: str | None
) -> list[Item]:
    value, ext = obj.get(key), obj.get("_" + key)
    at = f"{path}.{child.name}"  # FHIRPath names a choice element without its type suffix
    if value is None and ext is None:
        if key in obj or "_" + key in obj:
            seen.update((key, "_" + key))
            ctx.add("error", "structure", "Null is not a valid value", at)
        return []
    seen.update((key, "_" + key))
    if not child.array:
        if isinstance(value, list) or isinstance(ext, list):
            ctx.add("error", "structure", f"'{key}' has cardinality ..1 and must not be an array", at)
            return []
        return [(value, ext, at, code)]
    if (value is not None and not isinstance(value, list)) or (ext is not None and not isinstance(ext, list)):
        ctx.add("error", "structure", f"'{key}' repeats and must be a JSON array", at)
        return []
    values, exts = value or [], ext or []
    if not values and not exts:
        ctx.add("error", "structure", "An array must not be empty", at)
    count = max(len(values), len(exts))
    return [
        (values[i] if i < len(values) else None, exts[i] if i < len(exts) else None, f"{at}[{i}]", code)
        for i in range(count)
    ]


def check_items(child: Rule, items: list[Item], path: str, ctx: Ctx) -> None:
    where = f"{path}.{child.name}"
    if len(items) < child.min:
        ctx.add("error", "required", f"{child.label}: minimum required = {child.min}, found {len(items)}", where)
    if child.max is not None and len(items) > child.max:
        ctx.add("error", "structure", f"{child.label}: maximum allowed = {child.max}, found {len(items)}", where)
    matched: list[Rule | None] = [None] * len(items)
    if child.slices:
        matched = match_slices(child, items, where, ctx)
    for item, rule in zip(items, matched, strict=True):
        if rule is None and child.name in _EXTENSIONS:
            check_extension(child, item, ctx)
        else:
            check_value(rule or child, item, ctx)


def check_extension(child: Rule, item: Item, ctx: Ctx) -> None:
    value, _, path, _ = item
    url = value.get("url") if isinstance(value, dict) else None
    definition = ctx.validator(url) if isinstance(url, str) and "|" not in url else None
    if definition is not None and definition.type == "Extension":
        _check_complex(definition.root, value, path, "Extension", ctx)
        return
    check_value(child, item, ctx)
    if child.name == "modifierExtension" and isinstance(url, str):
        ctx.add("warning", "extension", f"Unknown modifier extension {url}", path)


def check_value(rule: Rule, item: Item, ctx: Ctx) -> None:
    value, ext, path, code = item
    code = code or (rule.types[0].code if len(rule.types) == 1 else None)
    if isinstance(ext, dict):
        _check_primitive_extensions(ext, path, ctx)
    if value is None:
        if ext is None:
            ctx.add("error", "invariant", "ele-1: All FHIR elements must have a @value or children", path)
        return
    if code and (code[0].islower() or code == "xhtml"):
        well_formed = check_primitive(code, value, path, ctx, rule.max_length)
        if well_formed and (rule.min_value is not None or rule.max_value is not None):
            check_bounds(rule, value, path, ctx)
        check_fixed_pattern(rule, value, path, ctx)
        check_binding(rule, code, value, path, ctx)
        if rule.invariants and well_formed:
            _check_invariants(rule.invariants, value, code, path, ctx)
        return
    if not isinstance(value, dict):
        ctx.add("error", "structure", f"Expected a JSON object for {code or rule.name}", path)
        return
    check_fixed_pattern(rule, value, path, ctx)
    if code in ("Resource", "DomainResource") or (code is not None and _is_resource_type(code, ctx)):
        check_nested_resource(rule, value, path, ctx)
        return
    if not value or (len(value) == 1 and "id" in value):
        ctx.add("error", "invariant", "ele-1: All FHIR elements must have a @value or children", path)
    if code:
        check_binding(rule, code, value, path, ctx)
        if code == "Reference":
            check_reference(rule.types, value, path, ctx)
        elif code == "Quantity" and (rule.min_value is not None or rule.max_value is not None):
            check_bounds(rule, value, path, ctx)
        elif code == "Identifier":
            check_identifier(value, path, ctx)
        elif code == "Extension":
            _check_ext1(value, path, ctx)
    if rule.children:
        type_path = code if code and code not in ("BackboneElement", "Element") else rule.path
        _check_invariants(rule.invariants, value, type_path, path, ctx)
        if code and code not in ("BackboneElement", "Element"):
            base = ctx.validator(CORE + code)
            if base is not None:
                _check_invariants(base.root.invariants, value, code, path, ctx, skip=rule.invariants)
        walk_object(rule, value, path, ctx)
        return
    _check_invariants(rule.invariants, value, code or rule.path, path, ctx)
    if code:
        target = _type_validator(rule, code, ctx)
        if target is not None:
            _check_complex(target.root, value, path, code, ctx, skip=rule.invariants)


def _is_resource_type(code: str, ctx: Ctx) -> bool:
    def make() -> bool:
        sd = ctx.registry.structure_definition(CORE + code)
        return bool(sd and sd.get("kind") == "resource")

    return ctx.registry.cached("is-resource", code, make)  # type: ignore[no-any-return]


def _type_validator(rule: Rule, code: str, ctx: Ctx) -> ProfileValidator | None:
    for t in rule.types:
        if t.code == code:
            for url in t.profiles:
                found = ctx.validator(url)
                if found is not None:
                    return found
    return ctx.validator(CORE + code)


def _check_complex(root: Rule, value: dict[str, Any], path: str, code: str, ctx: Ctx,
                   skip: list[Invariant] | None = None) -> None:
    _check_invariants(root.invariants, value, code, path, ctx, skip=skip)
    if code == "Extension":
        _check_ext1(value, path, ctx)
    walk_object(root, value, path, ctx)


def _check_ext1(value: dict[str, Any], path: str, ctx: Ctx) -> None:
    has_value = any(k.startswith(("value", "_value")) for k in value)
    if bool(value.get("extension")) == has_value:
        ctx.add("error", "invariant", "ext-1: Must have either extensions or value[x], not both", path)


def _check_primitive_extensions(ext: dict[str, Any], path: str, ctx: Ctx) -> None:
    element = ctx.validator(CORE + "Element")
    if element is not None:
        walk_object(element.root, ext, path, ctx)


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
        claimed = _list(meta.get("profile")) if isinstance(meta, dict) else []
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


def _check_invariants(invariants: list[Invariant], value: Any, type_path: str, path: str, ctx: Ctx,
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


# -- checks on one value -------------------------------------------------------------------------
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
        self.issues.append(_issue(severity, code, diagnostics, path))

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


def _list(value: Any) -> list[Any]:
    """A repeating element's items; malformed shapes are reported by the structural walk."""
    return value if isinstance(value, list) else []


def _coding(value: Any) -> list[tuple[str | None, str]]:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        return []
    system = value.get("system")
    return [(system if isinstance(system, str) else None, value["code"])]


def _codings(code: str, value: Any) -> list[tuple[str | None, str]] | None:
    if code in ("code", "string", "uri", "canonical"):
        return [(None, value)] if isinstance(value, str) else []
    if code == "Coding" or code == "Quantity":
        return _coding(value)
    if code == "CodeableConcept":
        return [pair for c in _list(value.get("coding")) for pair in _coding(c)]
    return None


def check_binding(rule: Rule, code: str, value: Any, path: str, ctx: Ctx) -> None:
    if rule.binding is None:
        return
    codings = _codings(code, value)
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
        for res in _list(ctx.resource.get("contained")) if isinstance(ctx.resource, dict) else []:
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
    codings = _list(value["type"].get("coding")) if isinstance(value.get("type"), dict) else []
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


# -- slicing -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Slicing:
    discriminators: list[tuple[str, str]]
    rules: str
    ordered: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Slicing:
        discs = [(d.get("type", "value"), d.get("path", "$this")) for d in data.get("discriminator", [])]
        return cls(discs, data.get("rules", "open"), bool(data.get("ordered")))


_URL_SLICING = Slicing([("value", "url")], "open", False)


def match_slices(child: Rule, items: list[Item], where: str, ctx: Ctx) -> list[Rule | None]:
    """The slice each item belongs to (first match), with slice cardinality and closed-slicing checks."""
    slicing = child.slicing or _URL_SLICING
    matched: list[Rule | None] = []
    for item in items:
        matched.append(next((s for s in child.slices if _slice_matches(s, item, slicing, ctx)), None))
    for s in child.slices:
        n = sum(1 for m in matched if m is s)
        if n < s.min:
            ctx.add("error", "required", f"Slice '{s.slice_name}' of {child.name}: minimum required = {s.min}, "
                    f"found {n}", where)
        if s.max is not None and n > s.max:
            ctx.add("error", "structure", f"Slice '{s.slice_name}' of {child.name}: maximum allowed = {s.max}, "
                    f"found {n}", where)
    if slicing.rules == "closed":
        for item, m in zip(items, matched, strict=True):
            if m is None:
                ctx.add("error", "structure", f"This {child.name} matches none of the slices of a closed slicing",
                        item[2])
    _check_order(child, slicing, items, matched, ctx)
    return matched


def _check_order(child: Rule, slicing: Slicing, items: list[Item], matched: list[Rule | None], ctx: Ctx) -> None:
    """`ordered`: items follow the order of the slices; `openAtEnd`: unmatched items come last."""
    rank = {id(s): n for n, s in enumerate(child.slices)}
    highest, unmatched_seen = -1, False
    for item, m in zip(items, matched, strict=True):
        if m is None:
            unmatched_seen = True
            continue
        if slicing.rules == "openAtEnd" and unmatched_seen:
            ctx.add("error", "structure", f"Items of {child.name} that match no slice must come last (openAtEnd)",
                    item[2])
        if slicing.ordered and rank[id(m)] < highest:
            ctx.add("error", "structure", f"Slice '{m.slice_name}' is out of order: the slices of {child.name} are "
                    "ordered", item[2])
        highest = max(highest, rank[id(m)])


def _slice_matches(s: Rule, item: Item, slicing: Slicing, ctx: Ctx) -> bool:
    if not slicing.discriminators:
        sub = Ctx(ctx.registry, ctx.resource, ctx.root)
        check_value(s, item, sub)
        return not any(i["severity"] == "error" for i in sub.issues)
    for dtype, dpath in slicing.discriminators:
        if _discriminator(s, item, dtype, dpath, ctx) is False:
            return False
    return True


def _discriminator(s: Rule, item: Item, dtype: str, dpath: str, ctx: Ctx) -> bool | None:
    value, _, _, code = item
    if "resolve()" in dpath:
        return None
    expected = _expectation(s, dpath, dtype, ctx)
    if expected is None:
        return None
    kind, exp = expected
    values = evaluate_path(value, dpath)
    if kind == "fixed":
        return any(v == exp for v in values)
    if kind == "pattern":
        return any(matches_pattern(exp, v) for v in values)
    if kind == "binding":
        from fhir_server.validation.terminology import value_set_membership

        members = value_set_membership(ctx.registry, exp)
        if members is None:
            return None
        codings: list[tuple[str | None, str]] = []
        for v in values:
            if isinstance(v, str):
                codings.append((None, v))
            elif isinstance(v, dict):
                codings += _codings("CodeableConcept" if "coding" in v else "Coding", v) or []
        return any(members.contains(system, c) for system, c in codings)
    if kind == "exists":
        return bool(values) is bool(exp)
    if kind == "types":
        actual = {v.get("resourceType") for v in values if isinstance(v, dict)} - {None}
        if dpath in ("$this", "") and code:
            actual.add(code)
        return bool(actual & set(exp)) if actual else None
    if kind == "profiles":
        for url in exp:
            target = ctx.validator(url)
            if target is None:
                continue
            sub = Ctx(ctx.registry, ctx.resource, ctx.root)
            for v in values:
                check_value(Rule("", "", "", 0, None, False, [TypeRef(target.type, (url,))]), (v, None, "", None), sub)
            if values and not any(i["severity"] == "error" for i in sub.issues):
                return True
        return False
    return None


def _expectation(s: Rule, dpath: str, dtype: str, ctx: Ctx) -> tuple[str, Any] | None:
    node: Rule | None = s
    parts = split_path(dpath)
    for n, part in enumerate(parts):
        assert node is not None
        if part.startswith("ofType("):
            continue  # the type narrows a choice element already reached by its stem
        carried = node.fixed if node.fixed is not None else node.pattern
        if carried is not None:
            found = evaluate_path(carried, ".".join(parts[n:]))
            return ("fixed" if node.fixed is not None else "pattern", found[0]) if found else None
        url = extension_call(part)
        if url is not None:
            sliced = next((c for c in node.children if c.name == "extension"), None)
            node = next((x for x in sliced.slices if _expectation(x, "url", "value", ctx) == ("fixed", url)),
                        None) if sliced is not None else None
            if node is None:
                return None
            continue
        nxt = next((c for c in node.children if c.name == part), None)
        if nxt is None and not node.children and node.types:
            profiles = [p for t in node.types for p in t.profiles]
            if part == "url" and node.types[0].code == "Extension" and profiles:
                return ("fixed", profiles[0].split("|")[0])
            target = next((v for p in profiles if (v := ctx.validator(p)) is not None), None)
            if target is not None:
                nxt = next((c for c in target.root.children if c.name == part), None)
        node = nxt
        if node is None:
            return None
    assert node is not None
    if dtype == "exists":
        return ("exists", node.min >= 1) if node.min >= 1 or node.max == 0 else None
    if dtype == "type":
        return ("types", [t.code for t in node.types]) if node.types else None
    if dtype == "profile":
        profiles = [p for t in node.types for p in t.profiles]
        return ("profiles", profiles) if profiles else None
    if node.fixed is not None:
        return ("fixed", node.fixed)
    if node.pattern is not None:
        return ("pattern", node.pattern)
    if node.binding is not None and node.binding[0] == "required":
        return ("binding", node.binding[1])
    return None


# -- top level -----------------------------------------------------------------------------------
def validate_resource(
    registry: ConformanceRegistry, resource: Any, profile_urls: list[str] | None
) -> list[dict[str, Any]]:
    """Issues of `resource` against the given profiles, or its known claims and its base type."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [_issue("error", "structure", "Not a FHIR resource: resourceType is missing", None)]
    rtype = resource["resourceType"]
    base = registry.base_definition_url(rtype)
    if base is None:
        return [_issue("error", "not-supported", f"Unknown resource type {rtype!r}", rtype)]
    issues: list[dict[str, Any]] = []
    urls = profile_urls
    if urls is None:
        urls = []
        meta = resource.get("meta")
        for claimed in _list(meta.get("profile")) if isinstance(meta, dict) else []:
            if isinstance(claimed, str) and registry.structure_definition(claimed) is not None:
                urls.append(claimed)
            else:
                issues.append(_issue("information", "not-supported",
                                     f"Profile {claimed} is not known to this server: not checked", rtype))
        urls = urls or [base]
    for url in urls:
        try:
            validator = registry.validator(url)
        except Exception as exc:  # noqa: BLE001 - a broken profile is the profile's fault, not the resource's
            message = str(exc) if isinstance(exc, FhirError) else f"{type(exc).__name__}: {exc}"
            issues.append(_issue("error", "processing", f"Profile {url} cannot be used: {message}", rtype))
            continue
        if validator is None:
            issues.append(_issue(registry.unknown_profile, "not-supported", f"Unknown profile {url}", rtype))
        elif validator.type != rtype:
            issues.append(_issue("error", "structure", f"Profile {url} constrains {validator.type}, not {rtype}",
                                 rtype))
        else:
            issues.extend(validator.validate(resource))
    return _dedupe(issues)


def _issue(severity: str, code: str, diagnostics: str, path: str | None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if path:
        issue["expression"] = [path]
    return issue


def _dedupe(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue["severity"], issue["diagnostics"], tuple(issue.get("expression", ())))
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
