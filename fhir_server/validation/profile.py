"""Compiled profile validators: a StructureDefinition snapshot turned once into a tree of element rules.

https://hl7.org/fhir/R4/validation.html

`ProfileValidator` walks a resource (a plain dict, decimals as `decimal.Decimal`) against the rules:
cardinality, JSON shape, primitive formats, choice types, reference targets, fixed/pattern values,
slicing, extensions by url, bindings and FHIRPath invariants. Complex datatypes not expanded in the
snapshot are checked by the datatype's own (cached) validator, so one Identifier rule set serves every
profile. Each issue names the instance path with real indexes (`Patient.identifier[1].system`).
The checks on one value are in checks.py, slice matching in slicing.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError
from fhir_server.validation.checks import (
    Ctx,
    as_list,
    check_binding,
    check_bounds,
    check_ext1,
    check_fixed_pattern,
    check_identifier,
    check_invariants,
    check_nested_resource,
    check_primitive,
    check_reference,
    make_issue,
)
from fhir_server.validation.fhirpath import Invariant, compile_invariant
from fhir_server.validation.rules import Item, Rule, Slicing, TypeRef
from fhir_server.validation.slicing import match_slices

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
_EXTENSIONS = ("extension", "modifierExtension")


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
        check_invariants(self.root.invariants, resource, self.type, path, ctx)
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
        matched = match_slices(child, items, where, ctx, check_value)
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
            check_invariants(rule.invariants, value, code, path, ctx)
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
            check_ext1(value, path, ctx)
    if rule.children:
        type_path = code if code and code not in ("BackboneElement", "Element") else rule.path
        check_invariants(rule.invariants, value, type_path, path, ctx)
        if code and code not in ("BackboneElement", "Element"):
            base = ctx.validator(CORE + code)
            if base is not None:
                check_invariants(base.root.invariants, value, code, path, ctx, skip=rule.invariants)
        walk_object(rule, value, path, ctx)
        return
    check_invariants(rule.invariants, value, code or rule.path, path, ctx)
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
    check_invariants(root.invariants, value, code, path, ctx, skip=skip)
    if code == "Extension":
        check_ext1(value, path, ctx)
    walk_object(root, value, path, ctx)


def _check_primitive_extensions(ext: dict[str, Any], path: str, ctx: Ctx) -> None:
    element = ctx.validator(CORE + "Element")
    if element is not None:
        walk_object(element.root, ext, path, ctx)


# -- top level -----------------------------------------------------------------------------------
def validate_resource(
    registry: ConformanceRegistry, resource: Any, profile_urls: list[str] | None
) -> list[dict[str, Any]]:
    """Issues of `resource` against the given profiles, or its known claims and its base type."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [make_issue("error", "structure", "Not a FHIR resource: resourceType is missing", None)]
    rtype = resource["resourceType"]
    base = registry.base_definition_url(rtype)
    if base is None:
        return [make_issue("error", "not-supported", f"Unknown resource type {rtype!r}", rtype)]
    issues: list[dict[str, Any]] = []
    urls = profile_urls
    if urls is None:
        urls = []
        meta = resource.get("meta")
        for claimed in as_list(meta.get("profile")) if isinstance(meta, dict) else []:
            if isinstance(claimed, str) and registry.structure_definition(claimed) is not None:
                urls.append(claimed)
            else:
                issues.append(make_issue("information", "not-supported",
                                         f"Profile {claimed} is not known to this server: not checked", rtype))
        urls = urls or [base]
    for url in urls:
        try:
            validator = registry.validator(url)
        except Exception as exc:  # noqa: BLE001 - a broken profile is the profile's fault, not the resource's
            message = str(exc) if isinstance(exc, FhirError) else f"{type(exc).__name__}: {exc}"
            issues.append(make_issue("error", "processing", f"Profile {url} cannot be used: {message}", rtype))
            continue
        if validator is None:
            issues.append(make_issue(registry.unknown_profile, "not-supported", f"Unknown profile {url}", rtype))
        elif validator.type != rtype:
            issues.append(make_issue("error", "structure",
                                     f"Profile {url} constrains {validator.type}, not {rtype}", rtype))
        else:
            issues.extend(validator.validate(resource))
    return _dedupe(issues)


def _dedupe(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue["severity"], issue["diagnostics"], tuple(issue.get("expression", ())))
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
