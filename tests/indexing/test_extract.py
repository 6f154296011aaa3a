"""Expression evaluation: the fast path for the R4 subset and the fhirpathpy fallback agree."""

from __future__ import annotations

from decimal import Decimal

import fhirpathpy

from fhir_server.indexing.extract import compile_expression, parse_steps
from fhir_server.search.registry import registry

OBS = {
    "resourceType": "Observation",
    "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]},
    "subject": {"reference": "Patient/1"},
    "performer": [{"reference": "Practitioner/2"}, {"reference": "Organization/3"}],
    "valueQuantity": {"value": Decimal("1.50"), "unit": "mg"},
    "component": [{"code": {"text": "a"}, "valueCodeableConcept": {"text": "b"}}],
}


def test_choice_types_resolve_through_the_model() -> None:
    assert compile_expression("(Observation.value as Quantity)")(OBS) == [(OBS["valueQuantity"], "Quantity")]
    assert compile_expression("Observation.value.ofType(CodeableConcept)")(OBS) == []
    assert compile_expression("Observation.component.value.ofType(CodeableConcept)")(OBS) == [
        ({"text": "b"}, "CodeableConcept")]


def test_where_resolve_filters_references_by_type() -> None:
    found = compile_expression("Observation.performer.where(resolve() is Practitioner)")(OBS)
    assert [v for v, _ in found] == [{"reference": "Practitioner/2"}]


def test_other_resource_types_give_nothing() -> None:
    assert compile_expression("Patient.name")(OBS) == []


def test_fallback_to_fhirpathpy_outside_the_subset() -> None:
    expr = "Patient.deceased.exists() and Patient.deceased != false"
    assert parse_steps(expr) is None
    assert [v for v, _ in compile_expression(expr)({"resourceType": "Patient", "deceasedBoolean": True})] == [True]


def test_fast_path_matches_fhirpathpy_on_every_r4_path_expression_of_observation() -> None:
    model = __import__("fhirpathpy.models", fromlist=["models"]).models["r4"]
    data = {k: v for k, v in OBS.items() if k != "valueQuantity"} | {"valueQuantity": {"value": 1.5, "unit": "mg"}}
    for impl in registry().params("Observation"):
        for expr in impl.expressions:
            if parse_steps(expr) is None or "resolve()" in expr:
                continue
            fast = [v for v, _ in compile_expression(expr)(data)]
            slow = fhirpathpy.evaluate(data, expr, model=model)
            assert fast == slow, expr
