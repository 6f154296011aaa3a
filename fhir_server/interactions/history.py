"""FHIR history interaction: instance, type and system level.

https://hl7.org/fhir/R4/http.html#history

Newest first. Pages are keyset cursors on the global write sequence (`_cursor`), so a page
stays the same whatever is written meanwhile.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import invalid, not_found
from fhir_server.fhir.bundles import bundle_bytes, entry_bytes
from fhir_server.fhir.resource import instant, parse_instant, valid_id
from fhir_server.interactions.common import check_type
from fhir_server.search.access import Access
from fhir_server.search.reads import history_filter, read_visible
from fhir_server.storage import HistoryEntry, Storage

__all__ = ["history"]

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}
_ACCEPTED = frozenset({"_since", "_at", "_count", "_cursor", "_format", "_pretty"})


async def history(
    ctx: RequestContext,
    store: Storage,
    type_: str | None,
    id_: str | None,
    params: list[tuple[str, str]],
) -> bytes:
    if type_ is not None:
        check_type(type_)
    since, at, cursor, count = _parse(ctx, params)
    if id_ is not None and not valid_id(id_):
        raise not_found(f"{type_}/{id_} is not known")
    if type_ is not None:
        ctx.require(type_, "r")
    access = ctx.access
    where = None if access.unrestricted else (lambda conn: history_filter(conn, access, type_))
    rows = await store.history(type_, id_, since, at, cursor, count + 1, where)
    if id_ is not None and not rows and not await _exists(store, access, type_ or "", id_):
        raise not_found(f"{type_}/{id_} is not known")
    page, more = rows[:count], len(rows) > count
    path = "/".join(p for p in (type_, id_, "_history") if p)
    links = [{"relation": "self", "url": _url(ctx, path, params, None)}]
    if more and page:
        links.append({"relation": "next", "url": _url(ctx, path, params, page[-1].seq)})
    header = {"resourceType": "Bundle", "type": "history", "link": links}
    return bundle_bytes(header, [_entry(ctx, row) for row in page])


async def _exists(store: Storage, access: Access, type_: str, id_: str) -> bool:
    if access.unrestricted:
        return await store.read(type_, id_) is not None
    return await store.run_read(lambda conn: read_visible(conn, access, type_, id_)) is not None


def _parse(ctx: RequestContext, params: list[tuple[str, str]]) -> tuple[int | None, int | None, int | None, int]:
    """(_since, _at, cursor, count) in microseconds / seq / entries."""
    out: dict[str, int | None] = {"since": None, "at": None, "cursor": None}
    count = ctx.settings.default_page_size
    for name, value in params:
        if name not in _ACCEPTED:
            raise invalid(f"Unknown history parameter '{name}' (use _since, _at or _count)")
        if name in ("_since", "_at"):
            micros = parse_instant(value)
            if micros is None:
                raise invalid(f"{name}={value} is not a FHIR instant (e.g. 2024-01-31T12:00:00Z)")
            out[name[1:]] = micros
        elif name in ("_count", "_cursor"):
            if not value.isdigit() or len(value) > 18:
                raise invalid(f"{name}={value} must be a non-negative integer")
            if name == "_count":
                count = min(int(value), ctx.settings.max_page_size)
            else:
                out["cursor"] = int(value)
    return out["since"], out["at"], out["cursor"], count


def _url(ctx: RequestContext, path: str, params: list[tuple[str, str]], cursor: int | None) -> str:
    kept = [(k, v) for k, v in params if k != "_cursor"]
    if cursor is not None:
        kept.append(("_cursor", str(cursor)))
    query = urlencode(kept)
    return f"{ctx.base_url}/{path}" + (f"?{query}" if query else "")


def _entry(ctx: RequestContext, row: HistoryEntry) -> bytes:
    url = row.type if row.method == "POST" else f"{row.type}/{row.id}"
    response = {"status": _STATUS[row.method], "etag": f'W/"{row.version}"', "lastModified": instant(row.last_updated)}
    if row.method != "DELETE":
        response["location"] = f"{ctx.base_url}/{row.type}/{row.id}/_history/{row.version}"
    after = {"request": {"method": row.method, "url": url}, "response": response}
    return entry_bytes({"fullUrl": f"{ctx.base_url}/{row.type}/{row.id}"}, row.body, after)
