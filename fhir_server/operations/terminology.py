"""Terminology operations over the loaded conformance resources.

https://hl7.org/fhir/R4/terminology-service.html

ValueSet/$expand, ValueSet/$validate-code, CodeSystem/$lookup, CodeSystem/$validate-code and
ConceptMap/$translate, answered from the ValueSets, CodeSystems and ConceptMaps the server holds
(profiles/ and the R4 definitions). Instance-level calls use the stored resource.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import invalid
from fhir_server.fhir.json import loads
from fhir_server.interactions.read import read
from fhir_server.operations.params import OperationInput
from fhir_server.storage import Storage
from fhir_server.validation import terminology
from fhir_server.validation.conformance import ConformanceRegistry

__all__ = ["OPERATIONS"]


async def _target(
    ctx: RequestContext, store: Storage, type_: str, id_: str | None, inputs: OperationInput, name: str,
) -> Any:
    """The ValueSet/CodeSystem/ConceptMap to work on: the instance, an inline resource, or a url."""
    if id_ is not None:
        stored = await read(ctx, store, type_, id_)
        assert stored.body is not None
        return loads(stored.body)
    return inputs.resources.get(name) or inputs.text("url")


async def expand(
    registry: ConformanceRegistry, ctx: RequestContext, store: Storage, id_: str | None, inputs: OperationInput,
) -> Any:
    target = await _target(ctx, store, "ValueSet", id_, inputs, "valueSet")
    if not target:
        raise invalid("ValueSet/$expand needs a url, a valueSet, or an instance")
    return terminology.expand(
        registry, target, inputs.text("filter"), inputs.integer("count"), inputs.integer("offset") or 0
    )


def _code_system_display(inputs: OperationInput) -> tuple[str | None, str | None, str | None]:
    coding = inputs.coding("coding")
    if coding:
        return coding.get("code"), coding.get("system"), coding.get("display")
    return inputs.text("code"), inputs.text("system"), inputs.text("display")


async def vs_validate_code(
    registry: ConformanceRegistry, ctx: RequestContext, store: Storage, id_: str | None, inputs: OperationInput
) -> Any:
    target = await _target(ctx, store, "ValueSet", id_, inputs, "valueSet")
    if not target:
        raise invalid("ValueSet/$validate-code needs a url, a valueSet, or an instance")
    code, system, display = _code_system_display(inputs)
    return terminology.validate_code(registry, target, code, system, display)


async def cs_validate_code(
    registry: ConformanceRegistry, ctx: RequestContext, store: Storage, id_: str | None, inputs: OperationInput
) -> Any:
    url = inputs.text("url")
    if id_ is not None:
        url = (await _target(ctx, store, "CodeSystem", id_, inputs, "codeSystem")).get("url")
    code, system, display = _code_system_display(inputs)
    return terminology.validate_code(registry, None, code, url or system, display)


async def lookup(
    registry: ConformanceRegistry, ctx: RequestContext, store: Storage, id_: str | None, inputs: OperationInput,
) -> Any:
    code, system, _ = _code_system_display(inputs)
    if id_ is not None:
        system = (await _target(ctx, store, "CodeSystem", id_, inputs, "codeSystem")).get("url")
    return terminology.lookup(registry, system, code, inputs.text("version"))


async def translate(
    registry: ConformanceRegistry, ctx: RequestContext, store: Storage, id_: str | None, inputs: OperationInput,
) -> Any:
    url = inputs.text("url")
    if id_ is not None:
        url = (await _target(ctx, store, "ConceptMap", id_, inputs, "conceptMap")).get("url")
    code, system, _ = _code_system_display(inputs)
    source = inputs.text("source") or inputs.text("valueSet")
    return terminology.translate(registry, url, system, code, source, inputs.text("target"))


# (resource type, operation name) -> implementation; read by the routes and the CapabilityStatement.
OPERATIONS = {
    ("ValueSet", "expand"): expand,
    ("ValueSet", "validate-code"): vs_validate_code,
    ("CodeSystem", "lookup"): lookup,
    ("CodeSystem", "validate-code"): cs_validate_code,
    ("ConceptMap", "translate"): translate,
}
