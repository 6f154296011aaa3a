"""AuditEvent and Provenance resources as this server writes them.

https://hl7.org/fhir/R4/auditevent.html and https://hl7.org/fhir/R4/provenance.html

Pure functions from (who, what, outcome) to resource dicts; `hooks` and `middleware` decide
when they are written. The shapes follow the IHE Basic Audit Log Patterns (BALP) codes that
R4 already has: type `rest`, subtype the restful-interaction code, action C/R/U/D/E.
"""

from __future__ import annotations

import base64
from typing import Any

from fhir_server.context import Agent
from fhir_server.fhir.resource import instant

__all__ = ["audit_event", "provenance"]

_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_ACTIVITY = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}
_ACTION = {"POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


def _who(agent: Agent) -> dict[str, Any]:
    if agent.fhir_user:
        return {"reference": agent.fhir_user}
    return {
        "identifier": {"system": "urn:fhir-server:client", "value": agent.client_id or "anonymous"},
        "display": agent.client_id or "anonymous",
    }


def provenance(agent: Agent, target: str, method: str, recorded_us: int) -> dict[str, Any]:
    """A Provenance of one stored version (`target` = Type/id/_history/version)."""
    who: dict[str, Any] = {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author"}]
        },
        "who": _who(agent),
    }
    if agent.organization:
        who["onBehalfOf"] = {"reference": agent.organization}
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": instant(recorded_us),
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": _ACTIVITY.get(method, "UPDATE")}]},
        "agent": [who],
    }
    if agent.client_id and agent.fhir_user:
        out["agent"].append({"who": {"identifier": {"system": "urn:fhir-server:client", "value": agent.client_id}}})
    return out


def audit_event(
    agent: Agent,
    interaction: str,
    method: str,
    status: int,
    recorded_us: int,
    what: str | None = None,
    query: str | None = None,
    patient: str | None = None,
) -> dict[str, Any]:
    """An AuditEvent of one request: who, which interaction on what, with which outcome."""
    action = "E" if interaction.startswith("search") or interaction == "operation" else _ACTION.get(method, "R")
    outcome = "0" if status < 400 else ("4" if status < 500 else "8")
    requestor: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                             "code": "IRCP"}]},
        "who": _who(agent),
        "requestor": True,
    }
    if agent.address:
        requestor["network"] = {"address": agent.address, "type": "2"}
    if agent.client_id:
        requestor["altId"] = agent.client_id
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": _INTERACTION, "code": interaction}],
        "action": action,
        "recorded": instant(recorded_us),
        "outcome": outcome,
        "agent": [requestor],
        "source": {"observer": {"display": "fhir-server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4"}]},
    }
    if status >= 400:
        event["outcomeDesc"] = f"HTTP {status}"
    if agent.break_glass:
        event["purposeOfEvent"] = [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG"}],
            "text": agent.break_glass,
        }]
    entities: list[dict[str, Any]] = []
    if what:
        entities.append({"what": {"reference": what}})
    if query:
        entities.append({"query": base64.b64encode(query.encode()).decode(), "description": query})
    if patient and patient != what:
        entities.append({"what": {"reference": patient},
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}})
    if entities:
        event["entity"] = entities
    return event
