"""Parse the entries of a batch or transaction Bundle into requests the server can run.

https://hl7.org/fhir/R4/http.html#transaction
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fhir_server.errors import FhirError, invalid, not_supported, too_large
from fhir_server.fhir.json import loads
from fhir_server.fhir.resource import etag_version, valid_id
from fhir_server.interactions.common import check_type
from fhir_server.interactions.patch import FHIRPATH_PATCH, JSON_PATCH, MERGE_PATCH

__all__ = ["BundleEntry", "annotate", "parse_bundle"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class BundleEntry:
    index: int
    method: str
    type_: str
    id_: str | None
    vid: str | None
    query: str | None  # criteria of a conditional entry, or a search/read's parameters
    operation: str | None  # "_history" or "_search" suffixes
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: int | None
    if_none_exist: str | None
    patch_kind: str | None = None
    url: str = ""
    # Served through the route table like a plain HTTP request (every batch entry, every
    # read): `path` is the url below the base, `headers` the request.* fields as HTTP headers.
    routed: bool = False
    path: str = ""
    headers: dict[str, str] | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def annotate(error: FhirError, entry: BundleEntry) -> FhirError:
    """Point every issue of an entry's error at that entry."""
    for item in error.issues:
        item["diagnostics"] = f"{entry.where} ({entry.method} {entry.url}): {item.get('diagnostics', '')}"
        item.setdefault("expression", [entry.where])
    return error


def parse_bundle(body: Any, base_url: str, max_entries: int) -> tuple[str, list[BundleEntry]]:
    """(bundle type, entries) of a batch or transaction Bundle; 400 on any malformed entry."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise invalid("POST to the base URL takes a Bundle of type batch or transaction")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise invalid(f"Bundle.type must be batch or transaction, not {kind!r}", expression="Bundle.type")
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise invalid("Bundle.entry must be an array", expression="Bundle.entry")
    if len(raw_entries) > max_entries:
        raise too_large(f"The Bundle has {len(raw_entries)} entries; this server takes at most {max_entries}")
    return kind, [_entry(i, raw, base_url, kind) for i, raw in enumerate(raw_entries)]


_HEADERS = {"ifMatch": "If-Match", "ifNoneExist": "If-None-Exist", "ifNoneMatch": "If-None-Match",
            "ifModifiedSince": "If-Modified-Since"}


def _routed(i: int, method: str, url: str, request: dict[str, Any], raw: dict[str, Any], base_url: str) -> BundleEntry:
    """An entry served through the route table: any interaction or operation the API offers."""
    where = f"Bundle.entry[{i}]"
    path = url[len(base_url) + 1 :] if url.startswith(base_url + "/") else url
    if "://" in path:
        raise not_supported(f"{where}.request.url {url} is not on this server")
    if not path.split("?")[0].strip("/") and method == "POST":
        raise not_supported(f"{where}: a Bundle inside a Bundle is not processed")
    headers = {name: str(request[key]) for key, name in _HEADERS.items() if request.get(key) is not None}
    resource = raw.get("resource")
    segments = [s for s in path.split("?")[0].split("/") if s]
    is_operation = bool(segments) and segments[-1].startswith("$")
    if method in ("POST", "PUT", "PATCH") and resource is None and not is_operation:
        raise invalid(f"{where}: a {method} entry needs a resource", expression=f"{where}.resource")
    entry = BundleEntry(
        index=i, method="GET" if method == "HEAD" else method, type_=segments[0] if segments else "", id_=None,
        vid=None, query=None, operation=None, resource=resource, full_url=raw.get("fullUrl"), if_match=None,
        if_none_exist=request.get("ifNoneExist"), url=url, routed=True, path=path, headers=headers,
    )
    if method == "PATCH" and resource is not None:
        entry.patch_kind, entry.resource = _patch_document(resource, where)
    return entry


def _entry(i: int, raw: Any, base_url: str, kind: str) -> BundleEntry:
    where = f"Bundle.entry[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise invalid(f"{where} needs a request", expression=f"{where}.request")
    request = raw["request"]
    method = request.get("method")
    if method not in _METHODS:
        raise invalid(
            f"{where}.request.method must be one of {', '.join(_METHODS)}", expression=f"{where}.request.method"
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise invalid(f"{where}.request.url is required", expression=f"{where}.request.url")
    if raw.get("resource") is not None and not isinstance(raw.get("resource"), dict):
        raise invalid(f"{where}.resource must be a resource", expression=f"{where}.resource")
    if kind == "batch" or method in ("GET", "HEAD"):
        return _routed(i, method, url, request, raw, base_url)
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise invalid(f"{where}.resource must be a resource", expression=f"{where}.resource")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise invalid(f"{where}: a {method} entry needs a resource", expression=f"{where}.resource")
    type_, id_, vid, query, operation = _split_url(url, base_url, where)
    entry = BundleEntry(
        index=i,
        method="GET" if method == "HEAD" else method,
        type_=type_,
        id_=id_,
        vid=vid,
        query=query,
        operation=operation,
        resource=resource,
        full_url=raw.get("fullUrl"),
        if_match=_version(request.get("ifMatch"), where),
        if_none_exist=request.get("ifNoneExist"),
        url=url,
    )
    _check_shape(entry)
    if method == "PATCH":
        assert resource is not None  # checked above
        entry.patch_kind, entry.resource = _patch_document(resource, where)
    return entry


def _split_url(url: str, base_url: str, where: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    if url.startswith(base_url + "/"):
        url = url[len(base_url) + 1 :]
    elif "://" in url:
        raise not_supported(f"{where}.request.url {url} is not on this server")
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    query = parts.query if "?" in url else None
    if not segments:
        raise invalid(f"{where}.request.url names no resource type", expression=f"{where}.request.url")
    type_ = segments[0]
    try:
        check_type(type_)
    except FhirError:
        raise invalid(
            f"{where}.request.url: unknown resource type '{type_}'", expression=f"{where}.request.url"
        ) from None
    id_ = vid = operation = None
    rest = segments[1:]
    if rest and rest[0] in ("_history", "_search"):
        operation, rest = rest[0], rest[1:]
    elif rest:
        id_, rest = rest[0], rest[1:]
        if not valid_id(id_):
            raise invalid(f"{where}.request.url: '{id_}' is not a valid id", expression=f"{where}.request.url")
        if rest and rest[0] == "_history":
            operation, rest = "_history", rest[1:]
            if rest:
                vid, rest = rest[0], rest[1:]
    if rest or (operation == "_search"):
        raise not_supported(f"{where}.request.url {url}: operations are not supported inside a Bundle")
    return type_, id_, vid, query, operation


def _check_shape(e: BundleEntry) -> None:
    def bad(msg: str) -> FhirError:
        return invalid(f"{e.where}: {msg}", expression=f"{e.where}.request.url")

    if e.method == "POST" and (e.id_ or e.operation):
        raise bad("POST goes to a resource type (Patient), not an instance")
    if e.method in ("PUT", "PATCH", "DELETE") and (e.operation or e.vid):
        raise bad(f"{e.method} goes to [type]/[id] or [type]?[criteria]")
    if e.method in ("PUT", "PATCH", "DELETE") and not e.id_ and not e.query:
        raise bad(f"{e.method} needs an id or search criteria")
    if e.resource is not None and e.method in ("POST", "PUT") and e.resource.get("resourceType") != e.type_:
        raise invalid(
            f"{e.where}: the resource is a {e.resource.get('resourceType')}, the url says {e.type_}",
            expression=f"{e.where}.resource",
        )


def _version(value: Any, where: str) -> int | None:
    if value is None:
        return None
    version = etag_version(str(value))
    if version is None:
        raise invalid(f"{where}.request.ifMatch {value} is not a version ETag", expression=f"{where}.request.ifMatch")
    return version


def _patch_document(resource: dict[str, Any], where: str) -> tuple[str, Any]:
    """A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch."""
    if resource.get("resourceType") == "Parameters":
        return FHIRPATH_PATCH, resource
    content_type = str(resource.get("contentType", ""))
    if resource.get("resourceType") == "Binary" and ("json-patch" in content_type or "merge-patch" in content_type):
        kind = JSON_PATCH if "json-patch" in content_type else MERGE_PATCH
        try:
            return kind, loads(base64.b64decode(str(resource.get("data", "")), validate=True))
        except (binascii.Error, ValueError):
            raise invalid(f"{where}.resource.data is not base64 JSON", expression=f"{where}.resource.data") from None
    raise invalid(
        f"{where}: a PATCH entry holds a Parameters resource (FHIRPath Patch) or a Binary with a JSON Patch"
        " (application/json-patch+json) or a JSON Merge Patch (application/merge-patch+json)",
        expression=f"{where}.resource",
    )
