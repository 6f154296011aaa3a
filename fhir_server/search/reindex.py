"""Custom SearchParameters and `$reindex`: a resumable job that indexes existing resources.

https://hl7.org/fhir/R4/searchparameter.html and https://hl7.org/fhir/R4/search.html#custom

A SearchParameter stored on the server joins the registry as `pending`: writes index it from
that moment, but a search on it is refused until a reindex job has walked every existing
resource of its base types. The job is a row of the `job` table (`fhir_server.jobs`, type
`reindex`, cursor = the last rid done), updated in the same transaction as each batch of index
rows, so a job stopped by a crash or restart continues where its last committed batch ended,
on whichever node holds its lease. Each parameter's state
is a row of `search_param_status` (pending -> indexing -> active), read back at start-up.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, and_, delete, false, func, insert, select, update

from fhir_server import jobs
from fhir_server.errors import FhirError, invalid
from fhir_server.fhir.json import loads
from fhir_server.search.indexer import param_rows
from fhir_server.search.registry import Registry, SearchParamImpl, registry, resource_types
from fhir_server.storage.index_schema import INDEX_TABLES, search_param_status
from fhir_server.storage.job_schema import job as job_table
from fhir_server.storage.schema import resource

__all__ = [
    "BATCH",
    "JOB_TYPE",
    "ReindexHandler",
    "definition_problem",
    "indexable",
    "job_status",
    "load_custom_parameters",
    "mark_active",
    "params_to_start",
    "register_search_parameter",
    "reindex_batch",
    "reindex_step",
    "start_reindex",
]

BATCH = 500
JOB_TYPE = "reindex"
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


def definition_problem(sp: dict[str, Any], reg: Registry | None = None) -> str | None:
    """Why `sp` cannot be made searchable (one sentence), or None when it can."""
    try:
        validate(sp)
    except FhirError as exc:
        return str(exc)
    reg = reg or registry()
    covered = {impl.res_type for impl in reg.preview(sp)}
    missing = [b for b in sp.get("base", []) if b not in covered]
    if missing:
        return (f"its expression {sp.get('expression')!r} applies to none of the base(s) {', '.join(missing)}: "
                "each member of the union must start with a base type name or be a path on the resource")
    return None


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
    reg = reg or registry()
    problem = definition_problem(sp, reg)
    if problem is not None:
        raise invalid(f"SearchParameter {sp.get('url')} cannot be searched: {problem}", "SearchParameter.expression")
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


def params_to_start(conn: Connection, reg: Registry | None = None) -> list[tuple[str, str]]:
    """Custom parameters not active and not being indexed by a running job (at start-up)."""
    reg = reg or registry()
    t = search_param_status
    j = job_table
    recorded = conn.execute(select(t.c.res_type, t.c.code, t.c.status, j.c.state)
                            .select_from(t.outerjoin(j, j.c.job_id == t.c.job_id))).all()
    busy = {(r.res_type, r.code) for r in recorded if r.status == "active" or r.state == "running"}
    return [(i.res_type, i.code) for ty in reg.types() for i in reg.params(ty)
            if i.custom and i.status != "active" and (i.res_type, i.code) not in busy]


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
    types = sorted({i.res_type for i in impls})
    total = conn.execute(select(func.count()).select_from(resource).where(
        resource.c.res_type.in_(types), resource.c.deleted == false())).scalar_one() if types else 0
    job_id = jobs.create(conn, JOB_TYPE, [list(p) for p in params], _now(), total=int(total), cursor=0)
    for impl in impls:
        _save_status(conn, impl, "indexing", job_id)
        reg.set_status(impl.res_type, impl.code, "indexing")
    return job_id


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


def _impls_by_type(job: jobs.Job, reg: Registry) -> dict[str, list[SearchParamImpl]]:
    by_type: dict[str, list[SearchParamImpl]] = {}
    for res_type, code in job.params:
        impl = reg.get(res_type, code)
        if impl is not None:
            by_type.setdefault(res_type, []).append(impl)
    return by_type


def reindex_batch(conn: Connection, job: jobs.Job, batch: int = BATCH, reg: Registry | None = None) -> jobs.Step:
    """Index the `batch` resources after the job's cursor (a rid); the last batch marks the
    parameters active in the database (the registry is the caller's business: after commit)."""
    reg = reg or registry()
    by_type = _impls_by_type(job, reg)
    last = int(job.cursor or 0)
    rows = conn.execute(
        select(resource.c.rid, resource.c.res_type, resource.c.body)
        .where(resource.c.res_type.in_(list(by_type)), resource.c.deleted == false(), resource.c.rid > last)
        .order_by(resource.c.rid).limit(batch)
    ).all()
    for rid, res_type, body in rows:
        _reindex_resource(conn, int(rid), res_type, bytes(body), by_type[res_type])
    done = len(rows) < batch
    if done:
        for impls in by_type.values():
            for impl in impls:
                _save_status(conn, impl, "active", job.job_id)
    return jobs.Step(cursor=int(rows[-1][0]) if rows else last, processed=len(rows), done=done)


def reindex_step(
    conn: Connection, job_id: str, batch: int = BATCH, reg: Registry | None = None, defer_registry: bool = False
) -> dict[str, Any]:
    """Index the next `batch` resources of the job (in its own transaction); returns the progress.

    This runs a step without a lease (tests, tools); the job runner runs `ReindexHandler`. With
    `defer_registry`, the in-memory registry is left alone: the caller marks the parameters
    active once the transaction has committed (`mark_active`), so no search sees an active
    parameter whose last index rows are not committed yet.
    """
    reg = reg or registry()
    job = jobs.load(conn, job_id, lock=True, type_=JOB_TYPE)
    if job.state != "running":
        return job_status(conn, job_id)
    after = jobs.advance(conn, job, reindex_batch(conn, job, batch, reg), _now())
    if not defer_registry:
        mark_active(after, reg)
    return job_status(conn, job_id)


def job_status(conn: Connection, job_id: str) -> dict[str, Any]:
    """The job as a Parameters resource: status, progress, and each parameter's state."""
    job = jobs.load(conn, job_id, type_=JOB_TYPE)
    states = {(r.res_type, r.code): r.status for r in conn.execute(
        select(search_param_status).where(search_param_status.c.job_id == job_id))}
    parts: list[dict[str, Any]] = [
        {"name": "job", "valueString": job_id},
        {"name": "status", "valueCode": job.state},
        {"name": "processed", "valueInteger": job.processed},
        {"name": "total", "valueInteger": job.total},
    ]
    if job.error:
        parts.append({"name": "error", "valueString": job.error})
    for res_type, code in job.params:
        parts.append({"name": "parameter", "part": [
            {"name": "type", "valueCode": res_type}, {"name": "code", "valueCode": code},
            {"name": "status", "valueCode": states.get((res_type, code), "unknown")}]})
    return {"resourceType": "Parameters", "parameter": parts}


def mark_active(job: jobs.Job, reg: Registry | None = None) -> None:
    """Once a finished job has committed: its parameters are searchable in this process."""
    if job.state != "done":
        return
    reg = reg or registry()
    for impls in _impls_by_type(job, reg).values():
        for impl in impls:
            reg.set_status(impl.res_type, impl.code, "active")


class ReindexHandler(jobs.JobHandler):
    """`$reindex` as a job type: one committed batch per step, the registry updated after commit."""

    def __init__(self, batch: int = BATCH, reg: Registry | None = None) -> None:
        self.batch = batch
        self.reg = reg

    def step(self, conn: Connection, job: jobs.Job) -> jobs.Step:
        return reindex_batch(conn, job, self.batch, self.reg)

    def after_commit(self, job: jobs.Job) -> None:
        mark_active(job, self.reg)
