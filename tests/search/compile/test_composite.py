"""Composite search on both databases: both components must hold within the same element."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError

CASES = [
    ("Observation", "code-value-quantity=http://loinc.org|8480-6$120", ["o1"]),
    ("Observation", "code-value-quantity=http://loinc.org|8480-6$gt130", ["o2"]),
    ("Observation", "code-value-quantity=8480-6$lt100", []),
    # 8462-4 is only in a component, with 80: the combo form pairs it, the plain form does not
    ("Observation", "component-code-value-quantity=8462-4$80", ["o1", "o2"]),
    ("Observation", "code-value-quantity=8462-4$80", []),
    ("Observation", "combo-code-value-quantity=8462-4$80|http://unitsofmeasure.org|mm[Hg]", ["o1", "o2"]),
    ("Observation", "combo-code-value-quantity=8462-4$120", []),
    ("Observation", "code-value-concept=365853002$http://snomed.info/sct|260385009", ["o4"]),
    ("Observation", "code-value-concept=365853002$260385000", []),
    ("Observation", "code-value-quantity:missing=true", ["o3", "o4"]),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_composite_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected


def test_composite_with_a_date_component(loader: Any, find: Any) -> None:
    loader.load([{"resourceType": "Observation", "id": "dated", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "21112-8"}]},
                  "valueDateTime": "2021-06-15"}])
    assert find("Observation", "code-value-date=21112-8$2021-06") == ["dated"]
    assert find("Observation", "code-value-date=21112-8$gt2021-07") == []
    assert find("Observation", "code-value-date=8480-6$2021-06") == []


CHROMOSOMES = "http://terminology.hl7.org/CodeSystem/chromosome-human"
NUCCORE = "http://www.ncbi.nlm.nih.gov/nuccore"


def _sequence(id_: str, chromosome: str, seq_id: str, window: tuple[int, int],
              variants: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "resourceType": "MolecularSequence", "id": id_, "type": "dna", "coordinateSystem": 0,
        "referenceSeq": {"chromosome": {"coding": [{"system": CHROMOSOMES, "code": chromosome}]},
                         "referenceSeqId": {"coding": [{"system": NUCCORE, "code": seq_id}]},
                         "windowStart": window[0], "windowEnd": window[1]},
        "variant": [{"start": s, "end": e, "observedAllele": "C", "referenceAllele": "T"} for s, e in variants],
    }


def _document(id_: str, relations: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference", "id": id_, "status": "current",
        "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/doc"}}],
        "relatesTo": [{"code": code, "target": {"reference": target}} for code, target in relations],
    }


@pytest.fixture(scope="module")
def more(loader: Any, loaded: Any) -> None:
    loader.load([
        _sequence("ms1", "1", "NC_000001.11", (22125500, 22125510), [(22125503, 22125504)]),
        _sequence("ms2", "2", "NC_000002.12", (100, 200), [(150, 151), (180, 190)]),
        _document("doc-a", [("replaces", "DocumentReference/doc-old"), ("appends", "DocumentReference/doc-other")]),
        _document("doc-b", [("signs", "http://other.example.org/fhir/DocumentReference/doc-old")]),
    ])


MORE_CASES = [
    # token $ number $ number, the token from the element (referenceSeq)
    ("chromosome-window-coordinate=1$22125500$22125510", ["ms1"]),
    (f"chromosome-window-coordinate={CHROMOSOMES}|1$22125500$22125510", ["ms1"]),
    ("chromosome-window-coordinate=2$22125500$22125510", []),
    ("chromosome-window-coordinate=1$22125500$22125511", []),
    ("chromosome-window-coordinate=1$ge22125400$le22125600", ["ms1"]),
    ("chromosome-window-coordinate=1$gt22125500$le22125600", []),
    ("chromosome-window-coordinate=1$ge100$le22125600,2$ge100$le200", ["ms1", "ms2"]),
    ("referenceseqid-window-coordinate=NC_000002.12$100$200", ["ms2"]),
    ("referenceseqid-window-coordinate=NC_000002.12$100$lt200", []),
    # the token from the resource (%resource.referenceSeq), the numbers from each variant
    ("chromosome-variant-coordinate=1$22125503$22125504", ["ms1"]),
    ("chromosome-variant-coordinate=2$22125503$22125504", []),
    ("chromosome-variant-coordinate=2$ge150$le190", ["ms2"]),
    ("chromosome-variant-coordinate=2$150$190", []),  # start of one variant, end of another
    ("chromosome-variant-coordinate=2$gt170$lt191", ["ms2"]),
    ("chromosome-variant-coordinate=2$gt180$lt191", []),
    (f"referenceseqid-variant-coordinate={NUCCORE}|NC_000001.11$22125503$22125504", ["ms1"]),
    ("referenceseqid-variant-coordinate=NC_000001.11$180$190", []),
    ("referenceseqid-variant-coordinate=NC_000002.12$180$190", ["ms2"]),
    ("chromosome-variant-coordinate:missing=false", ["ms1", "ms2"]),
]


@pytest.mark.parametrize(("qs", "expected"), MORE_CASES)
def test_three_part_composites_match_within_one_element(more: None, find: Any, qs: str,
                                                       expected: list[str]) -> None:
    assert find("MolecularSequence", qs) == expected


def test_three_part_composite_probed_per_row_when_another_term_drives(more: None, find: Any) -> None:
    assert find("MolecularSequence", "_id=ms2&chromosome-variant-coordinate=2$ge150$le190") == ["ms2"]
    assert find("MolecularSequence", "_id=ms2&chromosome-variant-coordinate=2$150$190") == []
    assert find("MolecularSequence", "_id=ms1&chromosome-variant-coordinate=2$ge150$le190") == []


RELATIONSHIP_CASES = [
    # reference $ token
    ("relationship=DocumentReference/doc-old$replaces", ["doc-a"]),
    ("relationship=doc-old$replaces", ["doc-a"]),
    ("relationship=DocumentReference/doc-other$appends", ["doc-a"]),
    ("relationship=DocumentReference/doc-old$appends", []),  # the two relations paired the other way
    ("relationship=DocumentReference/doc-old$signs", ["doc-b"]),  # an absolute reference's Type/id
    ("relationship=http://other.example.org/fhir/DocumentReference/doc-old$signs", ["doc-b"]),
    ("relationship=http://other.example.org/fhir/DocumentReference/doc-old$replaces", []),
    ("relationship=doc-old$signs,doc-other$appends", ["doc-a", "doc-b"]),
]


@pytest.mark.parametrize(("qs", "expected"), RELATIONSHIP_CASES)
def test_reference_token_composite(more: None, find: Any, qs: str, expected: list[str]) -> None:
    assert find("DocumentReference", qs) == expected


@pytest.mark.parametrize(("res_type", "qs"), [
    ("MolecularSequence", "chromosome-variant-coordinate=1$22125503"),  # two parts of three
    ("MolecularSequence", "chromosome-variant-coordinate=1$1$2$3"),
    ("MolecularSequence", "chromosome-variant-coordinate=1$abc$2"),
    ("MolecularSequence", "chromosome-variant-coordinate=1$$2"),
    ("DocumentReference", "relationship=Patient/$replaces"),
    ("Observation", "code-value-quantity=8480-6"),
])
def test_malformed_composite_value_is_a_400(more: None, find: Any, res_type: str, qs: str) -> None:
    with pytest.raises(FhirError) as err:
        find(res_type, qs)
    assert err.value.status == 400


def test_every_r4_composite_is_searchable() -> None:
    from fhir_server.search.registry import registry

    reg = registry()
    composites = [i for t in reg.types() for i in reg.params(t) if i.type == "composite"]
    assert len(composites) > 40
    assert [(i.res_type, i.code) for i in composites if i.strategy != "composite"] == []


CUSTOM = {
    "resourceType": "SearchParameter", "url": "http://example.org/fhir/SearchParameter/test-prob-risk-date",
    "name": "prob-risk-date", "status": "active", "code": "test-prob-risk-date", "base": ["RiskAssessment"],
    "type": "composite", "expression": "RiskAssessment.prediction",
    "component": [
        {"definition": "http://hl7.org/fhir/SearchParameter/RiskAssessment-probability", "expression": "probability"},
        {"definition": "http://hl7.org/fhir/SearchParameter/RiskAssessment-risk", "expression": "qualitativeRisk"},
        {"definition": "http://hl7.org/fhir/SearchParameter/clinical-date", "expression": "%resource.occurrence"},
    ],
}


def test_composite_whose_first_component_is_a_number(loader: Any, loaded: Any, find: Any) -> None:
    # A custom composite: number first (so it lives in the part table too), token, then a date
    # read from the resource rather than the prediction.
    from fhir_server.search.registry import registry

    (impl,) = registry().add(CUSTOM, status="active")
    assert impl.strategy == "composite"
    risk = "http://terminology.hl7.org/CodeSystem/risk-probability"
    loader.load([{"resourceType": "RiskAssessment", "id": "ra-custom", "status": "final",
                  "subject": {"reference": "Patient/p1"}, "occurrenceDateTime": "2020-05-01",
                  "prediction": [{"probabilityDecimal": 0.8, "qualitativeRisk": {"coding": [{"system": risk,
                                                                                           "code": "high"}]}},
                                 {"probabilityDecimal": 0.1, "qualitativeRisk": {"coding": [{"system": risk,
                                                                                           "code": "low"}]}}]}])
    code = CUSTOM["code"]
    assert find("RiskAssessment", f"{code}=gt0.5$high$2020") == ["ra-custom"]
    assert find("RiskAssessment", f"{code}=0.1$low$2020-05") == ["ra-custom"]
    assert find("RiskAssessment", f"{code}=gt0.5$low$2020") == []  # 0.8 is high, 0.1 low
    assert find("RiskAssessment", f"{code}=gt0.5$high$2021") == []
