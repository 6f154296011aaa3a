"""The access value: what one caller may read, as plain data compiled into every query's SQL.

https://hl7.org/fhir/R4/security.html and https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html

An `Access` is data, not a callable: it is hashable, so compiled plans that contain it stay
cacheable (one entry per distinct access value), and every read path (search, includes,
chains, `_has`, read, vread, history, conditional matching) receives one explicitly. The SQL
it stands for is built by `search.compile.access`; nothing is ever filtered after a query.

Patient data is what is linked to a patient (the R4 Patient compartment, plus Task.for):
- `patients="all"`: every patient (auth off, administrators, break-the-glass);
- `patients="own"`: the compartment of `patient` only (patient tokens);
- `patients="care-team"`: the patients with an active CareTeam in which `practitioner`
  (directly, through one of their PractitionerRoles or through those roles' organisations) or
  `organization` participates, unless an active Consent of that patient denies that actor;
- `patients="none"`: no patient data at all.
Resources linked to no patient (Practitioner, Organization, ValueSet, ...) are readable by any
caller whose scopes allow the type. `read_types` (None: every type) and `constraints` (SMART
v2 granular scopes: a type readable only where one of its queries matches) come from scopes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EVERYTHING", "Access"]


@dataclass(frozen=True, slots=True)
class Access:
    patients: str = "all"  # "all" | "own" | "care-team" | "none"
    patient: str | None = None  # "own": the patient's id
    practitioner: str | None = None  # "care-team": a Practitioner id
    organization: str | None = None  # "care-team": an Organization id the caller acts for
    read_types: frozenset[str] | None = None  # None: every type
    # (type, query string) pairs: the type is readable only where one of its queries matches
    constraints: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.patients not in ("all", "own", "care-team", "none"):
            raise ValueError(f"unknown patient access {self.patients!r}")
        if self.patients == "own" and not self.patient:
            raise ValueError("patients='own' needs a patient id")

    @property
    def unrestricted(self) -> bool:
        return self.patients == "all" and self.read_types is None and not self.constraints

    def restricts(self, types: tuple[str, ...]) -> bool:
        """Whether a query over `types` (empty: every type) needs the access term at all: a
        system client that sees every patient of the types it may read needs none."""
        if self.unrestricted:
            return False
        if self.patients != "all" or any(t in dict(self.constraints) for t in types) or not types:
            return True
        return not all(self.may_read_type(t) for t in types)

    def may_read_type(self, res_type: str) -> bool:
        return self.read_types is None or res_type in self.read_types

    def __str__(self) -> str:
        if self.unrestricted:
            return "(access everything)"
        who = {"own": f"Patient/{self.patient}", "care-team": f"{self.practitioner}|{self.organization}"}
        types = "*" if self.read_types is None else ",".join(sorted(self.read_types))
        return f"(access {self.patients} {who.get(self.patients, '')} types={types})"


EVERYTHING = Access()
