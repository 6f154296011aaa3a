"""The access policy of a coordination network: from a token's Caller to what it may read and do.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html

`request_access(caller)` gives the `Access` value compiled into every read path's SQL
(`search.compile.access`), `permits(caller)` the SMART scope check every interaction asks,
and `agent(caller, address)` the identity AuditEvent and Provenance record. The rules (also
in docs/access-policy.md):
- auth off and administrator clients: everything;
- patient tokens (patient context or fhirUser Patient/x): that patient's compartment only;
- user tokens of a practitioner (fhirUser Practitioner/x): the patients of whose active
  CareTeams they (or one of their PractitionerRoles, or those roles' organisations, or the
  client's organisation) are members, unless an active Consent of the patient denies them;
  break-the-glass (a `btg` token and a reason header) lifts that for the token's life;
- other user tokens: no patient data;
- system tokens: the care-team rule for the client's organisation when it has one, else
  every patient (a hospital EHR feeding the network);
- in every case only the types the scopes allow (read or search), AuditEvent only when a
  scope names it (auditors), and SMART v2 granular constraints on the types they limit.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlencode

from fhir_server.auth.caller import Caller
from fhir_server.auth.scopes import ScopeSet
from fhir_server.context import Agent
from fhir_server.definitions import resource_types
from fhir_server.search.access import EVERYTHING, Access

__all__ = ["agent", "permits", "request_access"]


def request_access(caller: Caller) -> Access:
    if caller.is_unrestricted:
        return EVERYTHING
    read_types, constraints = _scope_reads(caller.scopes)
    return Access(
        **_patients(caller),  # type: ignore[arg-type]
        read_types=read_types,
        constraints=constraints,
    )


def _patients(caller: Caller) -> dict[str, str | None]:
    if caller.break_glass and caller.kind == "user":
        return {"patients": "all"}
    fhir_type, _, fhir_id = (caller.fhir_user or "").partition("/")
    if caller.kind == "patient" or caller.scopes.context == "patient":
        own = caller.patient or (fhir_id if fhir_type == "Patient" else None)
        return {"patients": "own", "patient": own} if own else {"patients": "none"}
    org = _id(caller.organization, "Organization")
    if caller.kind == "user":
        if fhir_type == "Practitioner" and fhir_id:
            return {"patients": "care-team", "practitioner": fhir_id, "organization": org}
        return {"patients": "care-team", "organization": org} if org else {"patients": "none"}
    if caller.kind == "system":
        return {"patients": "care-team", "organization": org} if org else {"patients": "all"}
    return {"patients": "none"}


def _id(reference: str | None, type_: str) -> str | None:
    if not reference:
        return None
    t, _, i = reference.partition("/")
    return i if t == type_ and i else None


@lru_cache(maxsize=1024)
def _scope_reads(scopes: ScopeSet) -> tuple[frozenset[str] | None, tuple[tuple[str, str], ...]]:
    """(types readable, granular constraints) of a scope set: computed once per distinct set."""
    named = {s.res_type for s in scopes.resources}
    types = []
    constraints: list[tuple[str, str]] = []
    for t in sorted(resource_types()):
        if not (scopes.allows(t, "r") or scopes.allows(t, "s")):
            continue
        if t == "AuditEvent" and t not in named:
            continue  # the audit trail is for auditors' scopes, not for wildcards
        types.append(t)
        limits = scopes.constraints(t, "s") if scopes.allows(t, "s") else scopes.constraints(t, "r")
        for alternative in limits or ():
            constraints.append((t, urlencode(alternative)))
    return frozenset(types), tuple(constraints)


def permits(caller: Caller) -> object:
    """The scope check of interactions: `(type, letter) -> bool`."""
    if caller.is_unrestricted:
        return lambda _t, _l: True
    return _permits(caller.scopes)


@lru_cache(maxsize=1024)
def _permits(scopes: ScopeSet) -> object:
    auditor = any(s.res_type == "AuditEvent" for s in scopes.resources)

    def check(res_type: str, letter: str) -> bool:
        if res_type == "AuditEvent" and not auditor:
            return False  # the audit trail is for auditors' scopes, not for wildcards
        return scopes.allows(res_type, letter)

    return check


def agent(caller: Caller, address: str) -> Agent:
    return Agent(
        kind=caller.kind,
        client_id=caller.client_id,
        user=caller.subject,
        fhir_user=caller.fhir_user,
        organization=caller.organization,
        break_glass=caller.break_glass,
        address=address,
    )
