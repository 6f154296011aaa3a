"""The rules a profile compiles into: elements (`Rule`), their types and their slicing.

https://hl7.org/fhir/R4/elementdefinition.html

Plain data, shared by the profile walk (`profile.py`), the checks on one value (`checks.py`) and
slice matching (`slicing.py`); it imports none of them, so they import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.validation.fhirpath import Invariant

__all__ = ["Item", "Rule", "Slicing", "TypeRef"]

Item = tuple[Any, Any, str, str | None]  # value, primitive extension object, path, type code


@dataclass(slots=True)
class Slicing:
    discriminators: list[tuple[str, str]]
    rules: str
    ordered: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Slicing:
        discs = [(d.get("type", "value"), d.get("path", "$this")) for d in data.get("discriminator", [])]
        return cls(discs, data.get("rules", "open"), bool(data.get("ordered")))


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
