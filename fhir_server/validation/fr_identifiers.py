"""Check digits and structure of French health identifiers (INS/NIR, RPPS, FINESS, SIREN/SIRET, idNat).

https://hl7.fr/ig/fhir/core/ (FR Core identifier slices; systems listed in shared/fr-profiles.md §1.7)

Each `check_*` function returns None when the value is well formed, or one English sentence that
names the identifier and what is wrong. `check_identifier` turns those into OperationOutcome
issues for one Identifier, choosing the check from its system (and type code).

Rules and where they come from:
- NIR / INS (15 characters): key = 97 - (first 13 digits mod 97), with department 2A read as 19
  and 2B as 18 (INSEE rule, as implemented by python-stdnum `stdnum/fr/nir.py`). Structure per
  INSEE / fr.wikipedia "Numéro de sécurité sociale en France": sex digit 1-2 (3-4 foreigners
  being registered, 7-8 temporary NIA numbers), month 01-12 or 20-42 / 50-99 (incomplete civil
  status), department 01-99 or 2A/2B (20 stays valid: Corsicans born before 1976), order 001-999.
- RPPS (11 digits): Luhn. Checked against real numbers: 10000001916 (ANS Annuaire example),
  10005173140, and the ANS test-card series 99700… used by Pro Santé Connect test identities.
  Production RPPS start with 1, test cards with 9, so the first digit is not constrained.
- FINESS (9 characters, department may be 2A/2B): Luhn over all 9 digits (equivalently, the last
  digit is the Luhn key of the first 8), checked against real numbers from ansforge/finess.
  The mapping of 2A/2B for the key is not published anywhere we could cite, so for Corsican
  numbers only the structure is checked.
- SIREN (9) / SIRET (14): Luhn. La Poste's SIRETs (SIREN 356000000, except the head office
  35600000000048) use another rule: the sum of the 14 digits is a multiple of 5.
- idNatPs / idNatSt: prefix tables from ansforge/IG-FHIR-PDSM4DMP-EEDS input/fsh/Model/PSIdNat.fsh
  and StructIdNat.fsh (TRE_G08 / TRE_G07).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IdCheck",
    "check_finess",
    "check_identifier",
    "check_idnatps",
    "check_idnatst",
    "check_nir",
    "check_rpps",
    "check_siren",
    "check_siret",
]

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
INS_NIR_TEST = "urn:oid:1.2.250.1.213.1.4.10"
INS_NIR_DEMO = "urn:oid:1.2.250.1.213.1.4.11"
RPPS = "https://rpps.esante.gouv.fr"
ID_NAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
ID_NAT_ST = "urn:oid:1.2.250.1.71.4.2.2"
FINESS = "https://finess.esante.gouv.fr"
FINESS_ANNUAIRE = "http://finess.sante.gouv.fr"  # spelling used by the ANS Annuaire examples
SIRENE = "https://sirene.fr"

_NIR_SYSTEMS = {
    INS_NIR: "INS-NIR",
    INS_NIA: "INS-NIA",
    INS_NIR_TEST: "INS-NIR-TEST",
    INS_NIR_DEMO: "INS-NIR-DEMO",
}
_NIR_SEX_DIGITS = "123478"
_LA_POSTE_SIREN = "356000000"
_LA_POSTE_HEAD_OFFICE = "35600000000048"


@dataclass(frozen=True)
class IdCheck:
    """A finding with its own severity, for identifiers that are not always wrong when odd."""

    severity: str  # "error" | "warning"
    message: str


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _luhn_key(body: str) -> int:
    """The check digit that makes `body` + key Luhn-valid."""
    return next(k for k in range(10) if _luhn_ok(body + str(k)))


def _digits_problem(label: str, value: str, length: int) -> str | None:
    if len(value) != length:
        return f"{label} must have {length} digits, got {len(value)} characters"
    if not value.isascii() or not value.isdigit():
        return f"{label} must contain digits only"
    return None


# --------------------------------------------------------------------------------------------
# NIR / INS


def check_nir(value: str, label: str = "INS-NIR") -> str | None:
    """INS-NIR / INS-NIA / NIR: structure and mod-97 key (2A -> 19, 2B -> 18)."""
    if len(value) != 15:
        return f"{label} must have 15 characters (13-character number + 2-digit key), got {len(value)}"
    department = value[5:7]
    rest = value[:5] + value[7:]
    if not (rest.isascii() and rest.isdigit()) or not (department.isdigit() or department in ("2A", "2B")):
        return f"{label} must contain digits only, except 2A or 2B as the department"
    problem = _nir_structure(value, label)
    if problem:
        return problem
    number = value[:5] + {"2A": "19", "2B": "18"}.get(department, department) + value[7:13]
    expected = 97 - int(number) % 97
    if int(value[13:]) != expected:
        return f"{label} key mismatch: expected {expected:02d}, got {value[13:]}"
    return None


def _nir_structure(value: str, label: str) -> str | None:
    month = int(value[3:5])
    if value[0] not in _NIR_SEX_DIGITS:
        return f"{label} first digit must be 1 or 2 (3, 4, 7, 8 for temporary numbers), got {value[0]}"
    if not (1 <= month <= 12 or 20 <= month <= 42 or month >= 50):
        allowed = "01-12 (or 20-42, 50-99 for incomplete civil status)"
        return f"{label} month of birth must be {allowed}, got {month:02d}"
    if value[5:7] == "00":
        return f"{label} department of birth cannot be 00"
    if value[10:13] == "000":
        return f"{label} birth order number cannot be 000"
    return None


# --------------------------------------------------------------------------------------------
# Professionals and organisations


def check_rpps(value: str) -> str | None:
    """RPPS: 11 digits, the last one a Luhn check digit."""
    problem = _digits_problem("RPPS", value, 11)
    if problem:
        return problem
    if not _luhn_ok(value):
        return f"RPPS check digit mismatch: expected {_luhn_key(value[:10])}, got {value[10]}"
    return None


def check_finess(value: str) -> str | None:
    """FINESS: 9 characters (department 2A/2B allowed), Luhn check digit."""
    if len(value) != 9:
        return f"FINESS must have 9 characters, got {len(value)}"
    department, rest = value[:2], value[2:]
    if not (rest.isascii() and rest.isdigit()) or not (department.isdigit() or department in ("2A", "2B")):
        return "FINESS must contain digits only, except 2A or 2B as the department"
    if department in ("2A", "2B"):
        return None  # no citable rule for the key of Corsican numbers: structure only
    if not _luhn_ok(value):
        return f"FINESS check digit mismatch: expected {_luhn_key(value[:8])}, got {value[8]}"
    return None


def check_siren(value: str) -> str | None:
    """SIREN: 9 digits, Luhn."""
    problem = _digits_problem("SIREN", value, 9)
    if problem:
        return problem
    if not _luhn_ok(value):
        return f"SIREN check digit mismatch: expected {_luhn_key(value[:8])}, got {value[8]}"
    return None


def check_siret(value: str) -> str | None:
    """SIRET: 14 digits, Luhn, except La Poste's establishments (digit sum multiple of 5)."""
    problem = _digits_problem("SIRET", value, 14)
    if problem:
        return problem
    siren_problem = check_siren(value[:9])
    if siren_problem:
        return f"SIRET starts with an invalid SIREN: {siren_problem}"
    if value.startswith(_LA_POSTE_SIREN) and value != _LA_POSTE_HEAD_OFFICE:
        if sum(map(int, value)) % 5:
            return "SIRET of La Poste (SIREN 356000000): the sum of its digits must be a multiple of 5"
        return None
    if not _luhn_ok(value):
        return f"SIRET check digit mismatch: expected {_luhn_key(value[:13])}, got {value[13]}"
    return None


def _check_adeli(value: str) -> str | None:
    # ADELI's own key rule is not published; check the shape only (9 characters, 2A/2B allowed).
    if len(value) != 9 or not re.fullmatch(r"(\d\d|2A|2B)\d{7}", value):
        return f"ADELI must have 9 characters (digits, 2A/2B as the department), got {value!r}"
    return None


def _registry_then_local(label: str, value: str, check: Any) -> IdCheck | None:
    """Prefixes 3/4/5 (and 1, 6): '<registry number>/<local id>'."""
    registry, slash, local = value.partition("/")
    if not slash or not local:
        return IdCheck(
            "warning", f"idNatPs with prefix for {label} should read '<{label}>/<local id>', got {value!r}"
        )
    problem = check(registry) if check else None
    return IdCheck("error", f"idNatPs: {problem}") if problem else None


def check_idnatps(value: str) -> IdCheck | None:
    """idNatPs (urn:oid:1.2.250.1.71.4.2.1): a TRE_G08 prefix, then the source identifier."""
    if not value:
        return IdCheck("error", "idNatPs is empty")
    prefix, rest = value[0], value[1:]
    if prefix == "8":
        problem = check_rpps(rest)
        return IdCheck("error", f"idNatPs 8 + RPPS: {problem}") if problem else None
    if prefix == "0":
        problem = _check_adeli(rest)
        return IdCheck("error", f"idNatPs 0 + ADELI: {problem}") if problem else None
    registries = {
        "1": ("ADELI cabinet id", None),
        "3": ("FINESS", check_finess),
        "4": ("SIREN", check_siren),
        "5": ("SIRET", check_siret),
        "6": ("RPPS cabinet id", None),
    }
    if prefix in registries:
        label, check = registries[prefix]
        return _registry_then_local(label, rest, check)
    return IdCheck(
        "warning", f"idNatPs prefix {prefix!r} is not in TRE_G08 (0, 1, 3, 4, 5, 6, 8); value not checked"
    )


def check_idnatst(value: str) -> IdCheck | None:
    """idNatSt (urn:oid:1.2.250.1.71.4.2.2): 1 + FINESS, 2 + SIREN, 3 + SIRET, 0/4 + cabinet ids.

    Technical ids carry no prefix, so a value whose prefix and length do not match is only a warning.
    """
    checks = {
        "1": ("FINESS", 9, check_finess),
        "2": ("SIREN", 9, check_siren),
        "3": ("SIRET", 14, check_siret),
    }
    if value[:1] in checks:
        label, length, check = checks[value[0]]
        if len(value) != length + 1:
            return IdCheck(
                "warning",
                f"idNatSt starting with {value[0]} ({label}) should have {length + 1} "
                f"characters, got {len(value)}; checked as a technical id",
            )
        problem = check(value[1:])
        return IdCheck("error", f"idNatSt {value[0]} + {label}: {problem}") if problem else None
    return None


# --------------------------------------------------------------------------------------------
# Dispatch


def _issue(severity: str, message: str) -> dict[str, Any]:
    return {"severity": severity, "code": "value", "diagnostics": message}


def check_identifier(system: str, value: str, type_code: str | None) -> list[dict[str, Any]]:
    """OperationOutcome issues for one Identifier; [] when fine or when the system is not French."""
    if not isinstance(value, str) or not isinstance(system, str):
        return []
    if system in _NIR_SYSTEMS:
        label = "NIR" if system == INS_NIR and type_code == "NH" else _NIR_SYSTEMS[system]
        problem = check_nir(value, label)
        issues = [_issue("error", problem)] if problem else []
        if not problem and system == INS_NIR and value[0] in "78":
            issues.append(
                _issue(
                    "warning",
                    f"{label} starting with {value[0]} is a temporary number (NIA); "
                    f"INS-NIA uses the system {INS_NIA}",
                )
            )
        return issues
    found = _check_by_system(system, value, type_code)
    if isinstance(found, IdCheck):
        return [_issue(found.severity, found.message)]
    return [_issue("error", found)] if found else []


def _check_by_system(system: str, value: str, type_code: str | None) -> str | IdCheck | None:
    if system == RPPS:
        return check_rpps(value)
    if system in (FINESS, FINESS_ANNUAIRE):
        return check_finess(value)
    if system == ID_NAT_PS:
        return check_idnatps(value)
    if system == ID_NAT_ST:
        return check_idnatst(value)
    if system == SIRENE:
        kind = type_code if type_code in ("SIREN", "SIRET") else {9: "SIREN", 14: "SIRET"}.get(len(value))
        if kind is None:
            return (
                f"A {SIRENE} identifier must be a SIREN (9 digits) or a SIRET (14 digits), got {len(value)}"
            )
        return check_siren(value) if kind == "SIREN" else check_siret(value)
    return None
