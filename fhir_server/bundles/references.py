"""Reference rewriting inside a transaction Bundle.

https://hl7.org/fhir/R4/http.html#trules

Entries created in a transaction are known to the others by their `fullUrl` (usually
`urn:uuid:...`). Once the server has chosen their ids, every reference to such a fullUrl,
including links in the narrative, is rewritten to `Type/id`. A reference that is a search
(`Patient?identifier=...`) is a conditional reference: it is resolved inside the transaction
and must match exactly one resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["conditional_references", "rewrite_references"]


def rewrite_references(value: Any, mapping: dict[str, str]) -> Any:
    """A copy of `value` with Reference.reference values (and narrative links) mapped."""
    if not mapping:
        return value
    return _walk(value, lambda ref: mapping.get(ref, ref), mapping)


def conditional_references(value: Any) -> set[str]:
    """The conditional references (`Type?criteria`) found in `value`."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and "?" in ref and "/" not in ref.split("?", 1)[0]:
                found.add(ref)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(value)
    return found


def _walk(node: Any, fix: Callable[[str], str], mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, child in node.items():
            if key == "reference" and isinstance(child, str):
                out[key] = fix(child)
            elif key == "div" and isinstance(child, str):
                out[key] = _fix_narrative(child, mapping)
            else:
                out[key] = _walk(child, fix, mapping)
        return out
    if isinstance(node, list):
        return [_walk(child, fix, mapping) for child in node]
    return node


def _fix_narrative(div: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        if old.startswith("urn:") and old in div:
            div = div.replace(f'"{old}"', f'"{new}"')
    return div
