"""The access value compiled to SQL: the care-team and consent policy as index-table subqueries.

https://hl7.org/fhir/R4/compartmentdefinition-patient.html

`access_clause(access, res_type, r, ctx)` is the condition a row of alias `r` (the `resource`
table, or `resource_history`: both have rid, res_type and res_id) must meet to be visible.
It is ANDed into the main query by the planner, into the inner queries of chains and `_has`,
into includes, point reads and history: one function, so every path applies the same rule.

The visible patients of a care-team caller, as one subquery on the index tables:

    CareTeam.subject of every CareTeam whose status is active and one of whose participants
    is the practitioner, one of their PractitionerRoles, one of those roles' organisations or
    the caller's organisation; less the patients with an active Consent whose deny provision
    names one of those actors (`deny-actor`, a parameter this server defines:
    `search.registry.SERVER_PARAMETERS`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true, tuple_, union_all

from fhir_server.definitions import patient_compartment
from fhir_server.search.access import Access
from fhir_server.search.compile.common import Ctx, Probe, alias
from fhir_server.storage.index_schema import idx_reference, idx_token
from fhir_server.storage.schema import resource

__all__ = ["access_clause", "patient_links", "patient_visible", "visible_patients"]

# Links to a patient that the R4 Patient compartment leaves out but a coordination network needs.
_EXTRA_LINKS = {"Task": ("subject",)}


@lru_cache(maxsize=1)
def patient_links() -> dict[str, tuple[str, ...]]:
    """Type -> the reference parameters that link it to a patient (Patient itself: none)."""
    out = {
        e["code"]: tuple(e["param"])
        for e in patient_compartment().get("resource", [])
        if e.get("param") and e["code"] != "Patient"
    }
    for type_, params in _EXTRA_LINKS.items():
        out[type_] = tuple(dict.fromkeys((*out.get(type_, ()), *params)))
    return out


def access_clause(access: Access, res_type: str, r: Any, ctx: Ctx, point: bool = False) -> ColumnElement[bool]:
    """The condition for a row of `r` (of `res_type`, or "*" for any) to be visible.

    Granular-scope constraints are compiled by `tree.visible`, which calls this.
    """
    if isinstance(r, Probe):
        r = r.r
    if access.unrestricted:
        return true()
    if res_type != "*" and not access.may_read_type(res_type):
        return false()
    parts: list[ColumnElement[bool]] = []
    if res_type == "*" and access.read_types is not None:
        parts.append(r.c.res_type.in_(sorted(access.read_types)))
    if access.patients != "all":
        parts.append(_patient_row(access, res_type, r) if point else _patient_data(access, res_type, r))
    return and_(*parts) if parts else true()


def _patient_row(access: Access, res_type: str, r: Any) -> ColumnElement[bool]:
    """The per-row form, for reads by id: is *this* row's patient visible (a few index seeks),
    rather than listing every visible patient first."""
    links = patient_links()
    if res_type == "Patient":
        return patient_visible(access, r.c.res_id)
    if res_type not in links:
        return true()
    link = alias(idx_reference, "acc_row_link")
    found: ColumnElement[bool] = (
        select(link.c.rid)
        .where(
            link.c.rid == r.c.rid,
            link.c.param.in_(links[res_type]),
            link.c.target_type == "Patient",
            patient_visible(access, link.c.target_id),
        )
        .exists()
    )
    return found


def patient_visible(access: Access, patient_id: Any) -> ColumnElement[bool]:
    """Whether the patient `patient_id` (a column or value) is visible: correlated, index seeks."""
    if access.patients == "all":
        return true()
    if access.patients == "own":
        cond: ColumnElement[bool] = patient_id == access.patient
        return cond
    if access.patients == "none" or not (access.practitioner or access.organization):
        return false()
    team = _named(access, "CareTeam", "subject", "participant", "acc_row_team")
    denied = _named(access, "Consent", "patient", "deny-actor", "acc_row_consent")
    return and_(
        team.where(team.selected_columns[0] == patient_id).exists(),
        ~denied.where(denied.selected_columns[0] == patient_id).exists(),
    )


def _patient_data(access: Access, res_type: str, r: Any) -> ColumnElement[bool]:
    links = patient_links()
    if res_type == "Patient":
        return _patient_ids_in(access, r.c.res_id)
    if res_type != "*":
        if res_type not in links:
            return true()
        return r.c.rid.in_(_linked_rids(access, (res_type,)))
    return or_(
        and_(r.c.res_type == "Patient", _patient_ids_in(access, r.c.res_id)),
        and_(r.c.res_type.in_(sorted(links)), r.c.rid.in_(_linked_rids(access, tuple(sorted(links))))),
        r.c.res_type.not_in(["Patient", *sorted(links)]),
    )


def _patient_ids_in(access: Access, column: Any) -> ColumnElement[bool]:
    visible = visible_patients(access)
    if visible is None:
        return false()
    cond: ColumnElement[bool] = column.in_(visible)
    return cond


def _linked_rids(access: Access, types: tuple[str, ...]) -> Any:
    """rids of resources of `types` that reference a visible patient through a link parameter."""
    ref = alias(idx_reference, "acc_link")
    links = patient_links()
    pairs = [(t, p) for t in types for p in links[t]]
    scope = (
        and_(ref.c.res_type == types[0], ref.c.param.in_(links[types[0]]))
        if len(types) == 1
        else tuple_(ref.c.res_type, ref.c.param).in_(pairs)
    )
    visible = visible_patients(access)
    target = false() if visible is None else ref.c.target_id.in_(visible)
    return select(ref.c.rid).where(scope, ref.c.target_type == "Patient", target).correlate(None)


def visible_patients(access: Access) -> Any:
    """The ids of the patients whose data `access` may read: a list, a subquery, or None (none).

    Driven from the caller's side: the index rows that name one of the caller's actors as a
    CareTeam participant (a few, found by target id), then those teams' subjects.
    """
    if access.patients == "own":
        return [access.patient]
    if access.patients == "none" or not (access.practitioner or access.organization):
        return None
    teams = _named(access, "CareTeam", "subject", "participant", "acc_team")
    denied = _named(access, "Consent", "patient", "deny-actor", "acc_consent")
    return teams.where(teams.selected_columns[0].not_in(denied.correlate(None))).correlate(None)


def _named(access: Access, res_type: str, patient_param: str, actor_param: str, name: str) -> Any:
    """The patients (`patient_param`) of the active `res_type` resources whose `actor_param`
    names one of the caller's actors: CareTeams the caller is in, Consents that deny them."""
    ref = alias(idx_reference, name)
    return (
        select(ref.c.target_id)
        .where(
            ref.c.rid.in_(_actor_rids(access, res_type, actor_param)),
            ref.c.res_type == res_type,
            ref.c.param == patient_param,
            ref.c.target_type == "Patient",
            _active(ref.c.rid, f"{name}_status"),
        )
    )


def _active(rid: Any, name: str) -> ColumnElement[bool]:
    status = alias(idx_token, name)
    found: ColumnElement[bool] = (
        select(status.c.rid).where(status.c.rid == rid, status.c.param == "status", status.c.code == "active").exists()
    )
    return found


def _actor_rids(access: Access, res_type: str, param: str) -> Any:
    """rids of `res_type` whose `param` references the caller: the practitioner, one of their
    PractitionerRoles or those roles' organisations, or the caller's organisation or one of its
    PractitionerRoles. One index lookup per kind of actor, UNIONed."""
    ref = alias(idx_reference, f"acc_{param.replace('-', '_')}")

    def rows(target_type: str, ids: Any) -> Any:
        match = ref.c.target_id == ids if isinstance(ids, str) else ref.c.target_id.in_(ids)
        return select(ref.c.rid).where(ref.c.res_type == res_type, ref.c.param == param, match,
                                       ref.c.target_type == target_type)

    arms = []
    if access.practitioner:
        roles = _roles("practitioner", "Practitioner", access.practitioner)
        arms.append(rows("Practitioner", access.practitioner))
        arms.append(rows("PractitionerRole", _ids_of(roles)))
        arms.append(rows("Organization", _targets(roles, "organization", "Organization")))
    if access.organization:
        arms.append(rows("Organization", access.organization))
        arms.append(rows("PractitionerRole", _ids_of(_roles("organization", "Organization", access.organization))))
    return union_all(*arms) if len(arms) > 1 else arms[0]


def _ids_of(rids: Any) -> Any:
    return (
        select(resource.c.res_id).where(resource.c.rid.in_(rids), resource.c.deleted == false()).correlate(None)
    )


def _targets(rids: Any, param: str, target_type: str) -> Any:
    ref = alias(idx_reference, "acc_role_org")
    return (
        select(ref.c.target_id)
        .where(ref.c.rid.in_(rids), ref.c.param == param, ref.c.target_type == target_type)
        .correlate(None)
    )


def _roles(param: str, target_type: str, target_id: str) -> Any:
    """rids of the PractitionerRoles whose `param` is `target_type/target_id`: a practitioner's
    roles (`practitioner`) or an organisation's members (`organization`); active or not, the
    CareTeam decides."""
    role = alias(idx_reference, f"acc_role_{param}")
    return (
        select(role.c.rid)
        .where(
            role.c.res_type == "PractitionerRole",
            role.c.param == param,
            role.c.target_type == target_type,
            role.c.target_id == target_id,
        )
        .correlate(None)
    )
