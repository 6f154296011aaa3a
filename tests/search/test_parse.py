"""Query string -> AST, printed as s-expressions: modifiers, prefixes, OR/AND, chains, _has, controls."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.parse import Limits, parse_query, split_prefix, split_values
from fhir_server.search.registry import registry


def _ast(res_type: str, *params: tuple[str, str], strict: bool = True) -> str:
    return str(parse_query(registry(), (res_type,), list(params), strict=strict).where)


def test_param_values_and_modifiers_print_as_s_expressions() -> None:
    assert _ast("Patient", ("identifier", "urn:oid:1.2.250.1.213.1.4.8|123")) == (
        "(token identifier 'urn:oid:1.2.250.1.213.1.4.8|123')")
    assert _ast("Patient", ("name:exact", "Dupont")) == "(string:exact name 'Dupont')"
    assert _ast("Patient", ("gender", "male,female")) == "(token gender 'male' 'female')"


def test_repeated_parameters_are_anded_and_prefixes_split() -> None:
    assert _ast("Patient", ("birthdate", "ge1970"), ("birthdate", "lt1980")) == (
        "(and (date birthdate ge '1970') (date birthdate lt '1980'))")
    assert _ast("Observation", ("value-quantity", "ap5.4|http://unitsofmeasure.org|mg")) == (
        "(quantity value-quantity ap '5.4|http://unitsofmeasure.org|mg')")
    assert _ast("Patient", ("name", "ge")) == "(string name 'ge')"  # strings never take prefixes


def test_chains_and_has_nest() -> None:
    # an untyped link with several possible targets is an OR over those that have the parameter
    assert _ast("Observation", ("subject:Patient.general-practitioner.name", "x")) == (
        "(chain subject Patient (or (chain general-practitioner Practitioner (string name 'x'))"
        " (chain general-practitioner Organization (string name 'x'))))"
    )
    assert _ast("Observation", ("subject:Patient.general-practitioner:Practitioner.name", "x")) == (
        "(chain subject Patient (chain general-practitioner Practitioner (string name 'x')))"
    )
    assert _ast("Patient", ("_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/1")) == (
        "(has Observation patient (has AuditEvent entity (reference agent 'Practitioner/1')))")


def test_escaped_comma_is_part_of_the_value() -> None:
    assert split_values(r"a\,b,c") == ["a,b", "c"]
    assert split_prefix("ge2020") == ("ge", "2020")
    assert split_prefix("general") == (None, "general")


def test_controls_are_parsed_into_the_query() -> None:
    q = parse_query(registry(), ("Observation",), [
        ("_count", "5"), ("_sort", "-date,code"), ("_include", "Observation:subject:Patient"),
        ("_revinclude:iterate", "Provenance:target"), ("_total", "accurate"), ("_summary", "data"),
        ("_elements", "code,subject")], limits=Limits(20, 100))
    assert (q.count, q.total, q.summary, q.elements) == (5, "accurate", "data", ("code", "subject"))
    assert [str(k) for k in q.sort] == ["-date", "code"]
    assert [str(i) for i in q.includes] == [
        "_include=Observation:subject:Patient", "_revinclude:iterate=Provenance:target"]


@pytest.mark.parametrize(("params", "total"), [
    ([("_totalMethod", "count")], "accurate"),  # what fhirpy's count() sends (Aidbox's spelling)
    ([("_totalMethod", "estimate")], "estimate"),
    ([("_totalMethod", "ignore")], "none"),
    ([("_total", "none"), ("_totalMethod", "count")], "none"),  # the FHIR spelling wins
    ([("_totalMethod", "count"), ("_total", "none")], "none"),
])
def test_total_method_is_read_as_total(params: list[tuple[str, str]], total: str) -> None:
    assert parse_query(registry(), ("Patient",), params).total == total


@pytest.mark.parametrize(
    "params",
    [
        [("_totalMethod", "exact")],
        [("nonsense", "1")],
        [("name:fuzzy", "x")],
        [("_sort", "nonsense")],
        [("_total", "sometimes")],
        [("_summary", "maybe")],
        [("_include", "Observation:code")],
        [("_has:Observation", "x")],
        [("name", "")],
        [("_count", "ten")],
    ],
)
def test_strict_mode_rejects(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirError) as err:
        parse_query(registry(), ("Patient",), params)
    assert err.value.status == 400


def test_lenient_mode_records_unknown_parameters_and_keeps_the_rest() -> None:
    q = parse_query(registry(), ("Patient",), [("nonsense", "1"), ("name:fuzzy", "x"), ("gender", "male")],
                    strict=False)
    assert str(q.where) == "(token gender 'male')"
    assert len(q.ignored) == 2 and "nonsense" in q.ignored[0]
    assert q.echo == (("gender", "male"),)


def test_count_is_capped_by_the_configured_maximum() -> None:
    assert parse_query(registry(), ("Patient",), [("_count", "5000")], limits=Limits(20, 100)).count == 100
    assert parse_query(registry(), ("Patient",), [], limits=Limits(7, 100)).count == 7
