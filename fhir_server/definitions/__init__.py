"""The vendored FHIR R4 (4.0.1) definitions, loaded lazily and cached.

https://hl7.org/fhir/R4/downloads.html

The files under `r4/` are written by `scripts/vendor_r4_definitions.py` (see `r4/SOURCE.md`) and
ship inside the package, so they are read with importlib.resources: the installed server needs no
network and no npm. Each loader parses its file on first use only; callers must not mutate what
they get back, since every caller shares the same objects.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "patient_compartment",
    "r4_json_schema",
    "r4b_divergent_types",
    "resource_types",
    "search_parameters",
    "structure_definition_for_type",
    "structure_definitions",
    "value_sets_and_code_systems",
]

_BASE_URL = "http://hl7.org/fhir/StructureDefinition/"


def _read(name: str) -> Any:
    data = resources.files(__package__).joinpath("r4", name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    # Decimals as Decimal, as `fhir.json.loads` reads resources (fixed/pattern values compare with
    # them); not that function itself: the definitions are the bottom layer (docs/architecture.md).
    return json.loads(data, parse_float=Decimal)


@cache
def resource_types() -> frozenset[str]:
    """The names of the 146 concrete R4 resource types."""
    return frozenset(_read("resource-types.json"))


@cache
def search_parameters() -> list[dict[str, Any]]:
    """Every official R4 SearchParameter (without `xpath`)."""
    return list(_read("search-parameters.json"))


@cache
def patient_compartment() -> dict[str, Any]:
    """The R4 CompartmentDefinition `patient`."""
    return dict(_read("compartmentdefinition-patient.json"))


@cache
def structure_definitions() -> dict[str, dict[str, Any]]:
    """The base StructureDefinitions of resources, data types and core extensions, by canonical url."""
    found: dict[str, dict[str, Any]] = {}
    for name in ("profiles-types.json.gz", "profiles-resources.json.gz", "extension-definitions.json.gz"):
        for sd in _read(name):
            found[sd["url"]] = sd
    return found


def structure_definition_for_type(type_name: str) -> dict[str, Any] | None:
    """The StructureDefinition that defines `type_name` (a resource or data type), or None."""
    sd = structure_definitions().get(_BASE_URL + type_name)
    # Core profiles such as `vitalsigns` live under the same base url but constrain another type.
    if sd is None or sd.get("type") != type_name or sd.get("derivation") == "constraint":
        return None
    return sd


@cache
def value_sets_and_code_systems() -> list[dict[str, Any]]:
    """The R4 ValueSets and CodeSystems (FHIR, v2 and v3)."""
    return list(_read("valuesets.json.gz"))


@cache
def r4_json_schema() -> dict[str, Any]:
    """The official R4 JSON schema (draft-06), restricted to the R4 resource types."""
    return dict(_read("fhir.schema.json.gz"))


@cache
def r4b_divergent_types() -> frozenset[str]:
    """R4 resource types that the `fhir.resources.R4B` models cannot validate as R4."""
    return frozenset(_read("r4b-divergent-types.json"))
