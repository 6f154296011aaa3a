"""Load a set of resources with their own ids in one transaction (profiles at start, example data).

https://hl7.org/fhir/R4/http.html#update

Each resource is validated like an update (structure, then profiles); then all of them are
written in one transaction, all or nothing. A resource whose content equals the stored current
version is left alone, so loading the same folder twice writes nothing the second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, invalid
from fhir_server.fhir.json import loads
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import check_resource, check_type, store_version
from fhir_server.storage import Storage, WriteTx

__all__ = ["load_folder", "load_resources", "read_folder"]


def read_folder(folder: Path) -> list[dict[str, Any]]:
    """Every `*.json` resource of a folder, in file-name order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return [loads(path.read_bytes()) for path in sorted(folder.glob("*.json"))]


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


async def load_resources(ctx: RequestContext, store: Storage, resources: list[dict[str, Any]]) -> dict[str, int]:
    """Write every resource under its id; returns counts of created, updated and unchanged."""
    checked = []
    for i, resource in enumerate(resources):
        type_, id_ = resource.get("resourceType"), resource.get("id")
        if not isinstance(type_, str) or not isinstance(id_, str) or not valid_id(id_):
            raise invalid(f"Resource #{i} needs a resourceType and a valid id to be loaded")
        check_type(type_)
        current = await store.read(type_, id_)
        if current is not None and not current.deleted and current.body is not None:
            if _content(loads(current.body)) == _content(resource):
                checked.append(resource)  # stored already, validated then: the write below skips it
                continue
        try:
            checked.append(check_resource(ctx, type_, resource))
        except FhirError as exc:
            exc.issues.insert(0, {"severity": "error", "code": "processing", "diagnostics": f"In {type_}/{id_}:"})
            raise


    def run(tx: WriteTx) -> dict[str, int]:
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for resource in checked:
            type_, id_ = resource["resourceType"], resource["id"]
            current = tx.current(type_, id_)
            if current is not None and not current.deleted and current.body is not None:
                if _content(loads(current.body)) == _content(resource):
                    counts["unchanged"] += 1
                    continue
            store_version(tx, current, type_, id_, resource, "PUT")
            counts["created" if current is None or current.deleted else "updated"] += 1
        return counts

    return await store.write(run, ctx)


async def load_folder(ctx: RequestContext, store: Storage, folder: Path) -> dict[str, int]:
    return await load_resources(ctx, store, read_folder(folder))
