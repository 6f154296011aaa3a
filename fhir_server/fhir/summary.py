"""`_summary` and `_elements`: the subset of a resource a client asked for.

https://hl7.org/fhir/R4/search.html#summary

Subsets are computed on the top-level elements, from the R4 StructureDefinition of the type
(isSummary, min), and tagged SUBSETTED as the spec requires.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.definitions import structure_definition_for_type
from fhir_server.errors import invalid

__all__ = ["SUMMARY_VALUES", "nested_summary", "subset"]

SUMMARY_VALUES = frozenset({"true", "false", "text", "data", "count"})
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _top_elements(type_: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary element names, mandatory element names); choice names end in '[x]'."""
    sd = structure_definition_for_type(type_) or {}
    summary, mandatory = set(), set()
    for element in sd.get("snapshot", {}).get("element", []):
        path = element.get("path", "")
        parts = path.split(".")
        if len(parts) != 2:
            continue
        if element.get("isSummary"):
            summary.add(parts[1])
        if element.get("min", 0) > 0:
            mandatory.add(parts[1])
    return frozenset(summary), frozenset(mandatory)


def _matches(key: str, names: frozenset[str] | set[str]) -> bool:
    if key in names:
        return True
    return any(n.endswith("[x]") and key.startswith(n[:-3]) and key[len(n) - 3 : len(n) - 2].isupper() for n in names)


def _tagged(out: dict[str, Any]) -> dict[str, Any]:
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
    out["meta"] = meta
    return out


def subset(resource: dict[str, Any], summary: str | None, elements: str | None) -> dict[str, Any] | None:
    """The subset asked for, or None when the whole resource is to be returned."""
    type_ = resource.get("resourceType", "")
    if summary is not None and summary not in SUMMARY_VALUES:
        raise invalid(f"_summary={summary} is not one of {', '.join(sorted(SUMMARY_VALUES))}")
    if summary in ("true", "text", "data"):
        summary_names, mandatory = _top_elements(type_)
        if summary == "data":
            return _tagged({k: v for k, v in resource.items() if k != "text"})
        keep = summary_names if summary == "true" else mandatory | {"text"}
        return _tagged({k: v for k, v in resource.items() if k in _ALWAYS or _matches(k, keep)})
    if elements:
        _, mandatory = _top_elements(type_)
        wanted = {e.strip().split(".")[-1] for e in elements.split(",") if e.strip()}
        wanted |= mandatory
        return _tagged({k: v for k, v in resource.items() if k in _ALWAYS or k in wanted or _matches(k, wanted)})
    return None


@cache
def _summary_children(type_: str) -> dict[str, frozenset[str]]:
    """For each element path with children in the snapshot, the names of its summary children."""
    sd = structure_definition_for_type(type_) or {}
    children: dict[str, set[str]] = {}
    for element in sd.get("snapshot", {}).get("element", []):
        parent, dot, name = element.get("path", "").rpartition(".")
        if not dot:
            continue
        names = children.setdefault(parent, set())
        if element.get("isSummary"):
            names.add(name)
    return {parent: frozenset(names) for parent, names in children.items()}


def _summary_node(node: Any, path: str, children: dict[str, frozenset[str]]) -> Any:
    if isinstance(node, list):
        return [_summary_node(item, path, children) for item in node]
    if not isinstance(node, dict) or path not in children:
        return node  # a datatype: kept whole, as its own elements are all part of it
    names = children[path]
    return {k: _summary_node(v, f"{path}.{k}", children) for k, v in node.items() if _matches(k, names)}


def nested_summary(resource: dict[str, Any]) -> dict[str, Any]:
    """`_summary=true` applied at every level of a resource's backbone elements (isSummary)."""
    type_ = resource.get("resourceType", "")
    out = _summary_node(resource, type_, _summary_children(type_))
    return _tagged({**{k: resource[k] for k in _ALWAYS if k in resource}, **out})
