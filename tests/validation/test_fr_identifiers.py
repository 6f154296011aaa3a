"""Tests for the French identifier checks, on published real-format numbers.

https://hl7.fr/ig/fhir/core/

Where each number comes from is noted next to it. "stdnum" is python-stdnum
(github.com/arthurdejong/python-stdnum), whose doctests list numbers found in the wild.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.validation.fr_identifiers import (
    IdCheck,
    check_finess,
    check_identifier,
    check_idnatps,
    check_idnatst,
    check_nir,
    check_rpps,
    check_siren,
    check_siret,
)

# --------------------------------------------------------------------------------------------
# NIR / INS

VALID_NIRS = [
    "295109912611193",  # stdnum/fr/nir.py doctest (born abroad, department 99)
    "253072B07300470",  # stdnum/fr/nir.py doctest (Haute-Corse, 2B read as 18)
    "253072A07300443",  # stdnum/fr/nir.py doctest (Corse-du-Sud, 2A read as 19)
    "137047624348415",  # scienceetonnante.com/?p=255 worked example "1 37 04 76 243 484 15"
    "262087503203977",  # trabucaire.free.fr/?p=1824 worked example "2 62 08 75 032 039 77"
]


@pytest.mark.parametrize("value", VALID_NIRS)
def test_published_nirs_are_valid(value: str) -> None:
    assert check_nir(value) is None


def test_nir_with_wrong_key_names_expected_and_given_key() -> None:
    # stdnum/fr/nir.py doctest: 295109912611199 has an invalid check digit.
    assert check_nir("295109912611199") == "INS-NIR key mismatch: expected 93, got 99"


def test_corsican_department_is_not_read_as_zero() -> None:
    # With 2A read as 20 (a common mistake) the key would be 66, not 43.
    assert check_nir("253072A07300466") == "INS-NIR key mismatch: expected 43, got 66"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("29510991261119", "15 characters"),
        ("2951099126111930", "15 characters"),
        ("295109912611l93", "digits only"),
        ("253072C07300443", "digits only"),
        ("595109912611193", "first digit"),
        ("295139912611193", "month"),
        ("295100012611193", "department"),
        ("295109912600093", "order number"),
    ],
    ids=["short", "long", "letter", "department-2C", "sex-5", "month-13", "department-00", "order-000"],
)
def test_malformed_nir_is_reported(value: str, fragment: str) -> None:
    message = check_nir(value)
    assert message is not None and message.startswith("INS-NIR") and fragment in message


def test_nir_with_month_of_incomplete_civil_status_is_accepted() -> None:
    # Month 20-42 / 50-99 is used when the civil-status record gives no month (INSEE rule).
    body = "2953299126111"
    key = 97 - int(body) % 97
    assert check_nir(f"{body}{key:02d}") is None


def test_identifier_dispatch_labels_ins_nia_and_test_systems() -> None:
    issues = check_identifier("urn:oid:1.2.250.1.213.1.4.9", "295109912611199", "INS-NIA")
    assert issues == [
        {"severity": "error", "code": "value", "diagnostics": "INS-NIA key mismatch: expected 93, got 99"}
    ]
    assert check_identifier("urn:oid:1.2.250.1.213.1.4.10", "295109912611193", None) == []
    assert check_identifier("urn:oid:1.2.250.1.213.1.4.11", "295109912611193", None) == []


def test_billing_nir_is_labelled_nir() -> None:
    issues = check_identifier("urn:oid:1.2.250.1.213.1.4.8", "295109912611199", "NH")
    assert issues[0]["diagnostics"].startswith("NIR key mismatch")


def test_temporary_number_under_ins_nir_system_is_a_warning() -> None:
    body = "7951099126111"
    value = f"{body}{97 - int(body) % 97:02d}"
    issues = check_identifier("urn:oid:1.2.250.1.213.1.4.8", value, "INS-NIR")
    assert [i["severity"] for i in issues] == ["warning"]
    assert "urn:oid:1.2.250.1.213.1.4.9" in issues[0]["diagnostics"]


# --------------------------------------------------------------------------------------------
# RPPS

VALID_RPPS = [
    "10000001916",  # ansforge/IG-fhir-annuaire input/fsh/exemples/practitioner-exemple-1.fsh
    "10005173140",  # packagist.org/packages/qrcommunication/rppsapi README (getByRpps example)
    "99700771191",  # Pro Santé Connect test card (SubjectNameID 899700771191) quoted in a public project
]


@pytest.mark.parametrize("value", VALID_RPPS)
def test_published_rpps_are_valid(value: str) -> None:
    assert check_rpps(value) is None


def test_fr_core_example_rpps_fails_its_luhn_key() -> None:
    # FR Core's FRCorePractitionerExample uses the made-up RPPS 10101201234.
    assert check_rpps("10101201234") == "RPPS check digit mismatch: expected 3, got 4"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1000000191", "11 digits"),
        ("100000019166", "11 digits"),
        ("1000000191A", "digits only"),
        ("1000000191６", "digits only"),
    ],
    ids=["short", "long", "letter", "fullwidth-digit"],
)
def test_malformed_rpps_is_reported(value: str, fragment: str) -> None:
    message = check_rpps(value)
    assert message is not None and fragment in message


# --------------------------------------------------------------------------------------------
# FINESS, SIREN, SIRET

VALID_FINESS = [
    "010000016",
    "010000156",
    "010780195",
    "010787190",  # ansforge/finess exemple-finess-structures-journalier
    "750712184",  # AP-HP legal entity, e.g. DREES SAE scripts "FINESS AP-HP (Entité Juridique): 750712184"
    "750100125",  # Pitié-Salpêtrière, same source
]


@pytest.mark.parametrize("value", VALID_FINESS)
def test_published_finess_are_valid(value: str) -> None:
    assert check_finess(value) is None


def test_finess_with_wrong_key_is_reported() -> None:
    assert check_finess("750712185") == "FINESS check digit mismatch: expected 4, got 5"


def test_corsican_finess_is_checked_for_structure_only() -> None:
    assert check_finess("2A0000014") is None
    assert check_finess("2B0000020") is None
    assert check_finess("2C0000020") == "FINESS must contain digits only, except 2A or 2B as the department"
    assert check_finess("2A000001") == "FINESS must have 9 characters, got 8"


@pytest.mark.parametrize("value", ["732829320", "552100554", "260104633", "772201489", "356000000"])
def test_published_sirens_are_valid(value: str) -> None:
    # 732829320 from stdnum's SIRET doctest; 552100554 Peugeot SA (fr.wikipedia SIREN article);
    # 260104633 and 772201489 from ansforge/finess; 356000000 is La Poste.
    assert check_siren(value) is None


def test_siren_with_wrong_key_is_reported() -> None:
    assert check_siren("732829321") == "SIREN check digit mismatch: expected 0, got 1"


@pytest.mark.parametrize(
    "value",
    ["73282932000074", "77220148900022", "35600000009075", "35600000000048", "35600000049837"],
)
def test_published_sirets_are_valid(value: str) -> None:
    # stdnum/fr/siret.py and tests/test_fr_siret.doctest (the 356000000 ones are La Poste);
    # 77220148900022 from ansforge/finess.
    assert check_siret(value) is None


def test_siret_with_wrong_key_is_reported() -> None:
    # stdnum doctest: 73282932000079 has an invalid check digit.
    assert check_siret("73282932000079") == "SIRET check digit mismatch: expected 4, got 9"


def test_la_poste_siret_uses_the_digit_sum_rule() -> None:
    # stdnum tests/test_fr_siret.doctest: 35600000049838 is invalid.
    assert check_siret("35600000049838") == (
        "SIRET of La Poste (SIREN 356000000): the sum of its digits must be a multiple of 5"
    )


def test_siret_with_invalid_siren_part_is_reported() -> None:
    message = check_siret("73282932100070")
    assert message is not None and message.startswith("SIRET starts with an invalid SIREN")


def test_sirene_system_tells_siren_and_siret_apart() -> None:
    assert check_identifier("https://sirene.fr", "732829320", "SIREN") == []
    assert check_identifier("https://sirene.fr", "73282932000074", None) == []
    assert check_identifier("https://sirene.fr", "732829321", None)[0]["diagnostics"].startswith("SIREN")
    assert "SIREN (9 digits) or a SIRET" in check_identifier("https://sirene.fr", "1234", None)[0]["diagnostics"]
    wrong_type = check_identifier("https://sirene.fr", "732829320", "SIRET")
    assert wrong_type[0]["diagnostics"] == "SIRET must have 14 digits, got 9 characters"


# --------------------------------------------------------------------------------------------
# idNatPs / idNatSt


def test_idnatps_with_rpps_prefix_checks_the_rpps() -> None:
    assert check_idnatps("810000001916") is None  # ANS Annuaire practitioner-exemple-1
    assert check_idnatps("899700771191") is None
    found = check_idnatps("810101201234")  # FR Core FRCorePractitionerExample
    assert found == IdCheck("error", "idNatPs 8 + RPPS: RPPS check digit mismatch: expected 3, got 4")


def test_idnatps_with_adeli_prefix_checks_the_length() -> None:
    assert check_idnatps("0751234567") is None
    assert check_idnatps("02A1234567") is None
    found = check_idnatps("075123456")
    assert found is not None and found.severity == "error" and "ADELI" in found.message


def test_idnatps_with_registry_prefix_checks_the_registry_number() -> None:
    assert check_idnatps("3750712184/12345") is None
    found = check_idnatps("3750712185/12345")
    assert found is not None and found.severity == "error" and "FINESS check digit" in found.message
    shape = check_idnatps("3750712184")
    assert shape is not None and shape.severity == "warning"


def test_idnatps_with_unknown_prefix_is_a_warning() -> None:
    found = check_idnatps("9123")
    assert found is not None and found.severity == "warning" and "TRE_G08" in found.message
    issues = check_identifier("urn:oid:1.2.250.1.71.4.2.1", "9123", "IDNPS")
    assert [i["severity"] for i in issues] == ["warning"]


def test_idnatst_checks_finess_siren_siret_by_prefix() -> None:
    assert check_idnatst("1750712184") is None
    assert check_idnatst("2732829320") is None
    assert check_idnatst("373282932000074") is None
    # The ANS Annuaire example structure uses idNatSt 1754567860, whose FINESS fails its key.
    assert check_idnatst("1754567860") == IdCheck(
        "error", "idNatSt 1 + FINESS: FINESS check digit mismatch: expected 5, got 0"
    )
    assert check_idnatst("R10000000001") is None  # technical id without prefix
    odd = check_idnatst("12345")
    assert odd is not None and odd.severity == "warning"


# --------------------------------------------------------------------------------------------
# Dispatch


def test_rpps_and_finess_systems_are_dispatched() -> None:
    assert check_identifier("https://rpps.esante.gouv.fr", "10000001916", "RPPS") == []
    bad = check_identifier("https://rpps.esante.gouv.fr", "10101201234", "RPPS")
    assert bad == [
        {"severity": "error", "code": "value", "diagnostics": "RPPS check digit mismatch: expected 3, got 4"}
    ]
    assert check_identifier("https://finess.esante.gouv.fr", "750712184", "FINEJ") == []
    assert check_identifier("https://finess.esante.gouv.fr", "75071218", "FINEG")[0]["severity"] == "error"


def test_non_french_systems_are_not_checked() -> None:
    assert check_identifier("http://example.org/mrn", "12345", "MR") == []
    assert check_identifier("urn:oid:1.2.250.1.213.1.4.2", "anything", "INS-C") == []


FRENCH_SYSTEMS = [
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "https://rpps.esante.gouv.fr",
    "urn:oid:1.2.250.1.71.4.2.1",
    "urn:oid:1.2.250.1.71.4.2.2",
    "https://finess.esante.gouv.fr",
    "https://sirene.fr",
]


@given(
    system=st.sampled_from(FRENCH_SYSTEMS),
    value=st.text(alphabet="0123456789AB /²٣", max_size=20),
    type_code=st.sampled_from([None, "NH", "SIREN", "SIRET", "INS-NIR"]),
)
def test_any_text_gives_issues_never_exceptions(system: str, value: str, type_code: str | None) -> None:
    for issue in check_identifier(system, value, type_code):
        assert issue["code"] == "value" and issue["severity"] in ("error", "warning")
        assert isinstance(issue["diagnostics"], str) and issue["diagnostics"]


@given(body=st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_the_computed_nir_key_is_accepted_and_any_other_is_not(body: str) -> None:
    body = "1" + body[1:3] + "0175" + body[7:10] + "001"  # keep sex, month, department and order valid
    key = 97 - int(body) % 97
    assert check_nir(f"{body}{key:02d}") is None
    assert check_nir(f"{body}{(key % 97) + 1:02d}") is not None
