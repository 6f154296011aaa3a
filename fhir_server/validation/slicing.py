"""Slicing in profile validation: which slice each item of a sliced element belongs to, by its discriminators.

https://hl7.org/fhir/R4/profiling.html#slicing

`match_slices` assigns each item to its first matching slice, then checks slice cardinality,
closed and `openAtEnd` slicing and `ordered`. A discriminator's expected value is read from the
slice's own rules (`_expectation`); a discriminator this module cannot evaluate (`resolve()`, or no
fixed, pattern, required binding, type or profile to compare with) does not rule a slice out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.validation.checks import Ctx, codings_of, matches_pattern
from fhir_server.validation.fhirpath import evaluate_path, extension_call, split_path
from fhir_server.validation.rules import Item, Rule, Slicing, TypeRef

__all__ = ["Check", "Slicing", "match_slices"]

# How an item is checked against a rule: profile.check_value, handed in by the walk that calls
# `match_slices` (the walk and slice matching call each other; this module stays below it).
Check = Callable[[Rule, Item, Ctx], None]


_URL_SLICING = Slicing([("value", "url")], "open", False)


def match_slices(child: Rule, items: list[Item], where: str, ctx: Ctx, check: Check) -> list[Rule | None]:
    """The slice each item belongs to (first match), with slice cardinality and closed-slicing checks."""
    slicing = child.slicing or _URL_SLICING
    matched: list[Rule | None] = []
    for item in items:
        matched.append(next((s for s in child.slices if _slice_matches(s, item, slicing, ctx, check)), None))
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


def _slice_matches(s: Rule, item: Item, slicing: Slicing, ctx: Ctx, check: Check) -> bool:
    if not slicing.discriminators:
        return _conforms([(s, item)], ctx, check)
    for dtype, dpath in slicing.discriminators:
        if _discriminator(s, item, dtype, dpath, ctx, check) is False:
            return False
    return True


def _conforms(checks: list[tuple[Rule, Item]], ctx: Ctx, check: Check) -> bool:
    """Whether every item passes its rule without error; the issues of this trial are dropped."""
    sub = Ctx(ctx.registry, ctx.resource, ctx.root)
    for rule, item in checks:
        check(rule, item, sub)
    return not any(i["severity"] == "error" for i in sub.issues)


def _discriminator(s: Rule, item: Item, dtype: str, dpath: str, ctx: Ctx, check: Check) -> bool | None:
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
        return _in_value_set(exp, values, ctx)
    if kind == "exists":
        return bool(values) is bool(exp)
    if kind == "types":
        actual = {v.get("resourceType") for v in values if isinstance(v, dict)} - {None}
        if dpath in ("$this", "") and code:
            actual.add(code)
        return bool(actual & set(exp)) if actual else None
    if kind == "profiles":
        return _conforms_to_any(exp, values, ctx, check)
    return None


def _in_value_set(vs: str, values: list[Any], ctx: Ctx) -> bool | None:
    from fhir_server.validation.terminology import value_set_membership

    members = value_set_membership(ctx.registry, vs)
    if members is None:
        return None
    codings: list[tuple[str | None, str]] = []
    for v in values:
        if isinstance(v, str):
            codings.append((None, v))
        elif isinstance(v, dict):
            codings += codings_of("CodeableConcept" if "coding" in v else "Coding", v) or []
    return any(members.contains(system, c) for system, c in codings)


def _conforms_to_any(urls: list[str], values: list[Any], ctx: Ctx, check: Check) -> bool:
    """A `profile` discriminator: the values conform to one of the slice's type profiles."""
    for url in urls:
        target = ctx.validator(url)
        if target is None:
            continue
        rule = Rule("", "", "", 0, None, False, [TypeRef(target.type, (url,))])
        if values and _conforms([(rule, (v, None, "", None)) for v in values], ctx, check):
            return True
    return False


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
