"""Index rows of one resource: every indexed search parameter of its type, evaluated and normalised.

https://hl7.org/fhir/R4/search.html

The per-type modules in `search/compile/` turn expression results into rows (each module holds
both the rows and the SQL that reads them); this module runs the expressions and tags rows with
their parameter code. Rows are deduplicated: a code repeated in a CodeableConcept is one row.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from fhir_server.indexing.extract import Node, compile_expression
from fhir_server.search.compile import composite, date, near, number, quantity, reference, string, token, uri
from fhir_server.search.registry import Registry, SearchParamImpl

__all__ = ["MODULES", "param_rows", "resource_rows"]

MODULES: dict[str, ModuleType] = {
    "token": token,
    "string": string,
    "date": date,
    "number": number,
    "quantity": quantity,
    "reference": reference,
    "uri": uri,
    "composite": composite,
    "near": near,
}


def _nodes(impl: SearchParamImpl, resource: dict[str, Any]) -> list[Node]:
    if len(impl.expressions) == 1:
        return compile_expression(impl.expressions[0])(resource)
    out: list[Node] = []
    for expr in impl.expressions:
        out.extend(compile_expression(expr)(resource))
    return out


def param_rows(impl: SearchParamImpl, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows of one parameter, by index kind, with `param` set (modifier suffix included)."""
    nodes = _nodes(impl, resource)
    if not nodes:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    # Composite components may read the resource itself (`%resource.x`), not only the element.
    found = (composite.index_rows(nodes, impl, resource) if impl.strategy == "composite"
             else MODULES[impl.strategy].index_rows(nodes, impl))
    for kind, row in found:
        suffix = row.pop("param_suffix", "")
        key = (kind, (suffix, *row.values()))
        if key in seen:
            continue
        seen.add(key)
        row["param"] = impl.code + suffix
        out.setdefault(kind, []).append(row)
    return out


def resource_rows(
    reg: Registry, res_type: str, resource: dict[str, Any], only: set[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """All index rows of a resource by index kind (`only`: restrict to these codes)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for impl in reg.indexed_params(res_type):
        if only is not None and impl.code not in only:
            continue
        for kind, rows in param_rows(impl, resource).items():
            out.setdefault(kind, []).extend(rows)
    return out
