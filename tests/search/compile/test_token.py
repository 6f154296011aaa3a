"""Token search on both databases: system|code forms, OR-lists, :not, :text, :of-type, :in, :missing."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError

CASES = [
    # code in any system / system|code / |code / system|
    ("Observation", "code=8480-6", ["o1", "o2"]),
    ("Observation", "code=9999-9", []),
    ("Observation", "code=http://loinc.org|8480-6", ["o1", "o2"]),
    ("Observation", "code=http://snomed.info/sct|8480-6", []),
    ("Patient", "gender=|female", ["p1"]),
    ("Observation", "code=|8480-6", []),
    ("Observation", "code=http://snomed.info/sct|", ["o4"]),
    ("Observation", "code=http://example.org/none|", []),
    # comma = OR (one IN on the hash column), repeated = AND
    ("Observation", "code=8480-6,365853002", ["o1", "o2", "o4"]),
    ("Observation", "code=8480-6&status=final", ["o1"]),
    ("Observation", "code=8480-6&status=amended", []),
    # identifiers, booleans, ContactPoint
    ("Patient", "identifier=urn:oid:1.2.250.1.213.1.4.8|1234567890123", ["p1"]),
    ("Patient", "identifier=urn:oid:1.2.250.1.213.1.4.8|000", []),
    ("Patient", "active=true", ["p1"]),
    ("Patient", "active=false", ["p2"]),
    ("Patient", "phone=0601020304", ["p1"]),
    ("Patient", "deceased=false", ["p1", "p2", "p3"]),
    # :not -> also resources without any value
    ("Patient", "gender:not=female", ["p2", "p3"]),
    ("Patient", "gender:not=female,male", ["p3"]),
    # :text -> starts-with on the folded display/text
    ("Observation", "code:text=systolic", ["o1", "o2"]),
    ("Observation", "code:text=glycaemia", ["o3"]),
    ("Observation", "code:text=diastolic", []),
    ("Observation", "value-concept:text=negatif", ["o4"]),
    # :of-type (Identifier.type system|code|value)
    ("Patient", "identifier:of-type=http://interopsante.org/CodeSystem/v2-0203|INS-NIR|1234567890123", ["p1"]),
    ("Patient", "identifier:of-type=http://interopsante.org/CodeSystem/v2-0203|INS-NNTT|1234567890123", []),
    # :in / :not-in against ValueSets stored on the server
    ("Observation", "code:in=http://example.org/fhir/ValueSet/bp", ["o1", "o2"]),
    ("Observation", "code:in=http://example.org/fhir/ValueSet/snomed-all", ["o4"]),
    ("Observation", "code:not-in=http://example.org/fhir/ValueSet/bp", ["o3", "o4"]),
    # :missing
    ("Patient", "gender:missing=true", ["p3"]),
    ("Patient", "gender:missing=false", ["p1", "p2"]),
    # Resource-level tokens
    ("Patient", "_tag=http://example.org/tags|vip", ["p1"]),
    ("Patient", "_tag=http://example.org/tags|other", []),
    ("Patient", "_security=R", ["p1"]),
    ("Patient", "_security=N", []),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_token_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected


def test_in_with_unknown_valueset_is_an_error_not_an_empty_result(find: Any) -> None:
    with pytest.raises(FhirError) as err:
        find("Observation", "code:in=http://example.org/fhir/ValueSet/unknown")
    assert err.value.status == 400


def test_of_type_needs_three_parts(find: Any) -> None:
    with pytest.raises(FhirError):
        find("Patient", "identifier:of-type=INS-NIR|123")


def test_token_above_is_refused_not_ignored(find: Any) -> None:
    with pytest.raises(FhirError) as err:
        find("Observation", "code:above=8480-6")
    assert err.value.status == 400
