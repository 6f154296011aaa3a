"""Custom SearchParameters and `$reindex`: a resumable job that indexes existing resources.

https://hl7.org/fhir/R4/searchparameter.html and https://hl7.org/fhir/R4/search.html#custom

A SearchParameter stored on the server joins the registry as `pending`: writes index it from
that moment, but a search on it is refused until a reindex job has walked every existing
resource of its base types. The job's state (last rid done, counts) is a row of
`reindex_job`, updated in the same transaction as each batch of index rows, so a job stopped
by a crash or restart continues where its last committed batch ended. Each parameter's state
is a row of `search_param_status` (pending -> indexing -> active), read back at start-up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, false, func, insert, select, update

from fhir_server.errors import invalid, not_found
from fhir_server.fhir.json import loads
from fhir_server.indexing.rows import param_rows
from fhir_server.search.registry import Registry, SearchParamImpl, registry, resource_types
from fhir_server.storage.index_schema import INDEX_TABLES, reindex_job, search_param_status
from fhir_server.storage.schema import resource

__all__ = [
    "BATCH",
    "indexable",
    "job_status",
    "load_custom_parameters",
    "mark_active",
    "register_search_parameter",
    "reindex_step",
    "run_reindex",
    "start_reindex",
]

BATCH = 500
_TYPES = frozenset({"number", "date", "string", "token", "reference", "composite", "quantity", "uri"})


def _now() -> int:
    return time.time_ns() // 1000


def indexable(sp: dict[str, Any]) -> bool:
    """A SearchParameter this server can make searchable; others are stored as plain content."""
    code = sp.get("code")
    return (
        isinstance(code, str)
        and not code.startswith("_")
        and sp.get("type") in _TYPES
        and bool(sp.get("expression"))
        and bool(sp.get("url"))
    )


def validate(sp: dict[str, Any]) -> None:
    code, type_, bases = sp.get("code"), sp.get("type"), sp.get("base") or []
    if not isinstance(code, str) or not code or code.startswith("_") or any(c in code for c in ":.,$|"):
        raise invalid("SearchParameter.code must be a plain name (no leading _, no : . , $ |)", "SearchParameter.code")
    if type_ not in _TYPES:
        raise invalid(f"SearchParameter.type {type_!r} cannot be indexed by this server", "SearchParameter.type")
    if not bases or any(b not in resource_types() for b in bases):
        raise invalid("SearchParameter.base must list R4 resource types", "SearchParameter.base")
    if not sp.get("expression"):
        raise invalid("SearchParameter.expression is required to index a custom parameter",
                      "SearchParameter.expression")
    if not sp.get("url"):
        raise invalid("SearchParameter.url is required", "SearchParameter.url")


def _save_status(conn: Connection, impl: SearchParamImpl, status: str, job_id: str | None = None) -> None:
    t = search_param_status
    key = and_(t.c.url == impl.url, t.c.res_type == impl.res_type)
    if conn.execute(select(t.c.url).where(key)).first() is None:
        conn.execute(insert(t).values(url=impl.url, res_type=impl.res_type, code=impl.code, status=status,
                                      job_id=job_id))
    else:
        conn.execute(update(t).where(key).values(code=impl.code, status=status, job_id=job_id))


def register_search_parameter(conn: Connection, sp: dict[str, Any], reg: Registry | None = None) -> list[str]:
    """Make a stored SearchParameter known (status `pending`); returns the base types it applies to.

    Call it in the transaction that stores the SearchParameter resource.
    """
    validate(sp)
    reg = reg or registry()
    impls = reg.add(sp, status="pending")
    for impl in impls:
        _save_status(conn, impl, "pending")
    return [i.res_type for i in impls]


def load_custom_parameters(conn: Connection, reg: Registry | None = None) -> int:
    """At start-up: register every stored SearchParameter with its recorded status."""
    reg = reg or registry()
    statuses = {(row.url, row.res_type): row.status for row in conn.execute(select(search_param_status))}
    count = 0
    stmt = select(resource.c.body).where(resource.c.res_type == "SearchParameter", resource.c.deleted == false())
    for (body,) in conn.execute(stmt):
        sp = loads(body)
        if not indexable(sp):
            continue
        for impl in reg.add(sp, status="pending"):
            reg.set_status(impl.res_type, impl.code, statuses.get((impl.url, impl.res_type), "pending"))
            count += 1
    return count


def start_reindex(conn: Connection, params: list[tuple[str, str]] | None = None, reg: Registry | None = None) -> str:
    """Create a job for `params` ((type, code) pairs; None = every pending custom parameter)."""
    reg = reg or registry()
    if params is None:
        params = [(i.res_type, i.code) for t in reg.types() for i in reg.params(t) if i.custom and i.status != "active"]
    impls = []
    for res_type, code in params:
        impl = reg.get(res_type, code)
        if impl is None or not impl.indexed:
            raise invalid(f"{res_type} has no indexable search parameter '{code}'")
        impls.append(impl)
    job_id = str(uuid.uuid4())
    types = sorted({i.res_type for i in impls})
    total = conn.execute(select(func.count()).select_from(resource).where(
        resource.c.res_type.in_(types), resource.c.deleted == false())).scalar_one() if types else 0
    conn.execute(insert(reindex_job).values(
        job_id=job_id, params=orjson.dumps(params).decode(), status="running", last_rid=0, processed=0,
        total=int(total), started=_now(), updated=_now()))
    for impl in impls:
        _save_status(conn, impl, "indexing", job_id)
        reg.set_status(impl.res_type, impl.code, "indexing")
    return job_id


def _job(conn: Connection, job_id: str) -> Any:
    # FOR UPDATE (PostgreSQL): two nodes resuming the same job take its batches in turn.
    row = conn.execute(select(reindex_job).where(reindex_job.c.job_id == job_id).with_for_update()).first()
    if row is None:
        raise not_found(f"No $reindex job {job_id}")
    return row


def _reindex_resource(conn: Connection, rid: int, res_type: str, body: bytes, impls: list[SearchParamImpl]) -> None:
    doc = loads(body)
    for impl in impls:
        names = [impl.code, impl.code + ":identifier", impl.code + ":of-type"]
        tables = {INDEX_TABLES[impl.strategy], INDEX_TABLES["token"]}
        if impl.strategy == "composite":  # a third component, or a range-typed first one
            tables.add(INDEX_TABLES["composite_part"])
        for table in tables:
            conn.execute(delete(table).where(table.c.rid == rid, table.c.param.in_(names)))
        for kind, rows in param_rows(impl, doc).items():
            keys = {k for r in rows for k in r}
            conn.execute(insert(INDEX_TABLES[kind]),
                         [{**dict.fromkeys(keys), **r, "rid": rid, "res_type": res_type} for r in rows])


def reindex_step(
    conn: Connection, job_id: str, batch: int = BATCH, reg: Registry | None = None, defer_registry: bool = False
) -> dict[str, Any]:
    """Index the next `batch` resources of the job (in its own transaction); returns the progress.

    With `defer_registry`, the in-memory registry is left alone: the caller marks the parameters
    active once the transaction has committed (`mark_active`), so no search sees an active
    parameter whose last index rows are not committed yet.
    """
    reg = reg or registry()
    job = _job(conn, job_id)
    if job.status != "running":
        return job_status(conn, job_id)
    params = [tuple(p) for p in orjson.loads(job.params)]
    by_type: dict[str, list[SearchParamImpl]] = {}
    for res_type, code in params:
        impl = reg.get(res_type, code)
        if impl is not None:
            by_type.setdefault(res_type, []).append(impl)
    rows = conn.execute(
        select(resource.c.rid, resource.c.res_type, resource.c.body)
        .where(resource.c.res_type.in_(list(by_type)), resource.c.deleted == false(), resource.c.rid > job.last_rid)
        .order_by(resource.c.rid).limit(batch)
    ).all()
    for rid, res_type, body in rows:
        _reindex_resource(conn, int(rid), res_type, bytes(body), by_type[res_type])
    values: dict[str, Any] = {"processed": job.processed + len(rows), "updated": _now()}
    if rows:
        values["last_rid"] = int(rows[-1][0])
    if len(rows) < batch:
        values["status"] = "done"
        for impls in by_type.values():
            for impl in impls:
                _save_status(conn, impl, "active", job_id)
                if not defer_registry:
                    reg.set_status(impl.res_type, impl.code, "active")
    conn.execute(update(reindex_job).where(reindex_job.c.job_id == job_id).values(**values))
    return job_status(conn, job_id)


def job_status(conn: Connection, job_id: str) -> dict[str, Any]:
    """The job as a Parameters resource: status, progress, and each parameter's state."""
    job = _job(conn, job_id)
    params = [tuple(p) for p in orjson.loads(job.params)]
    states = {(r.res_type, r.code): r.status for r in conn.execute(
        select(search_param_status).where(search_param_status.c.job_id == job_id))}
    parts: list[dict[str, Any]] = [
        {"name": "job", "valueString": job_id},
        {"name": "status", "valueCode": job.status},
        {"name": "processed", "valueInteger": int(job.processed)},
        {"name": "total", "valueInteger": int(job.total)},
    ]
    for res_type, code in params:
        parts.append({"name": "parameter", "part": [
            {"name": "type", "valueCode": res_type}, {"name": "code", "valueCode": code},
            {"name": "status", "valueCode": states.get((res_type, code), "unknown")}]})
    return {"resourceType": "Parameters", "parameter": parts}


async def run_reindex(write: Callable[[Callable[[Connection], dict[str, Any]]], Awaitable[dict[str, Any]]],
                      job_id: str, batch: int = BATCH) -> dict[str, Any]:
    """Run (or resume) a job to the end, one committed batch per `write` call."""
    while True:
        progress = await write(lambda conn: reindex_step(conn, job_id, batch, defer_registry=True))
        status = next(p["valueCode"] for p in progress["parameter"] if p["name"] == "status")
        if status != "running":
            mark_active(progress)  # committed: searches may use the parameters now
            return progress


def mark_active(progress: dict[str, Any], reg: Registry | None = None) -> None:
    """Mark the parameters a finished job reports active in the registry."""
    reg = reg or registry()
    for part in progress["parameter"]:
        if part["name"] != "parameter":
            continue
        fields = {p["name"]: p["valueCode"] for p in part["part"]}
        if fields.get("status") == "active":
            reg.set_status(fields["type"], fields["code"], "active")
