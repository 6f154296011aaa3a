"""The ASGI application: FastAPI factory, storage lifecycle, routes and the error handler.

https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from fhir_server import __version__
from fhir_server.api.access_log import AccessLogMiddleware
from fhir_server.api.capabilities import build_capability_statement, capability_view
from fhir_server.api.http import error_response
from fhir_server.api.openapi import openapi_document
from fhir_server.api.operation_routes import OPERATION_DEFINITIONS, type_operations
from fhir_server.api.routes import ROUTES
from fhir_server.api.swagger import install_swagger_ui
from fhir_server.audit.hooks import record_write
from fhir_server.audit.middleware import AuditMiddleware, AuditWriter
from fhir_server.auth import caller_of, install_auth, policy
from fhir_server.config import Settings, StartupError, get_settings
from fhir_server.context import EVERYTHING, RequestContext
from fhir_server.definitions import resource_types
from fhir_server.errors import FhirError
from fhir_server.fhir.json import dumps, loads
from fhir_server.interactions.load import load_resources
from fhir_server.jobs import JobRunner
from fhir_server.operations import reindex
from fhir_server.search import capability_includes, capability_search_params, ucum
from fhir_server.search.registry import registry as search_registry
from fhir_server.search.reindex import definition_problem, load_custom_parameters
from fhir_server.storage import Storage, StoredResource, migrate, open_storage
from fhir_server.validation.service import ProfileService

__all__ = ["FHIR_BASE", "StartupError", "create_app"]

FHIR_BASE = "/fhir"
log = logging.getLogger("fhir_server")


_CONFORMANCE_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "SearchParameter")


def _conformance_hook(profiles: ProfileService) -> Any:
    """After commit: stored or deleted conformance resources change what validation knows."""

    def register(_ctx: Any, written: list[StoredResource]) -> None:
        for stored in written:
            if stored.type in _CONFORMANCE_TYPES and stored.deleted:
                profiles.registry.remove(stored.type, stored.id)
            elif stored.type in _CONFORMANCE_TYPES and stored.body is not None:
                resource = loads(stored.body)
                if resource.get("url"):
                    profiles.registry.add(resource)

    return register


def _context_factory(settings: Settings, profiles: ProfileService) -> Any:
    """The RequestContext of a request (built once per request), or of the server itself."""

    def make(request: Request | None) -> RequestContext:
        if request is None:  # the server's own work (loading profiles at start)
            return RequestContext(
                settings=settings,
                base_url=settings.base_url.rstrip("/"),
                access=EVERYTHING,
                validate_profiles=profiles.validate_for_write,
            )
        state = request.scope.setdefault("state", {})
        made: RequestContext | None = state.get("fhir_context")
        if made is not None:
            return made
        caller = caller_of(request)
        client = request.scope.get("client")
        made = RequestContext(
            settings=settings,
            base_url=configured or _base_url(request),
            access=policy.request_access(caller),
            request_id=request.headers.get("x-request-id", ""),
            agent=policy.agent(caller, client[0] if client else ""),
            permits=policy.permits(caller),  # type: ignore[arg-type]
            validate_profiles=profiles.validate_for_write,
        )
        state["fhir_context"] = made
        return made

    configured = settings.base_url.rstrip("/")
    return make


_BASES: dict[tuple[Any, ...], str] = {}


def _base_url(request: Request) -> str:
    """The FHIR base URL as this request reached us (FHIR_BASE_URL unset): built once per
    (scheme, Host, server, mount point), since Starlette builds a URL object for every `base_url`."""
    scope = request.scope
    key = (scope.get("scheme"), request.headers.get("host"), tuple(scope.get("server") or ()), scope.get("root_path"))
    found = _BASES.get(key)
    if found is None:
        if len(_BASES) > 256:  # Host headers are the client's: keep the memo bounded
            _BASES.clear()
        found = _BASES[key] = f"{str(request.base_url).rstrip('/')}{FHIR_BASE}"
    return found


async def _load_conformance(store: Storage, profiles: ProfileService, ctx: RequestContext) -> None:
    """Serve the profiles folder through the API, and know what was POSTed before a restart."""
    await load_resources(ctx, store, profiles.local_resources())
    for type_ in _CONFORMANCE_TYPES:
        for body in await store.current_bodies(type_):
            resource = loads(body)
            if resource.get("url"):
                profiles.registry.add(resource)


def _search_parameter_problems(profiles: ProfileService) -> list[str]:
    """Each SearchParameter of the profiles folder that cannot be made searchable, and why."""
    problems = []
    for resource in profiles.local_resources():
        if resource.get("resourceType") == "SearchParameter":
            problem = definition_problem(resource)
            if problem is not None:
                problems.append(f"SearchParameter/{resource.get('id')} ({resource.get('url')}): {problem}")
    return problems


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> FastAPI:
    """The FHIR server. `storage` may be given (tests); otherwise it is opened from settings."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = storage
        if store is None:
            migrate(settings.database_url)
            store = open_storage(settings)
        await store.start()
        hook = _conformance_hook(profiles)
        store.hooks.after_commit.append(hook)
        audited = settings.auth == "on"
        if audited:  # with auth off there is nobody to record
            store.hooks.in_tx.append(record_write)
            app.state.audit_writer = AuditWriter(store)
            app.state.audit_writer.start()
        app.state.storage = store
        ucum.warm_up()
        await store.run_read(load_custom_parameters)
        if settings.load_profiles:
            await _load_conformance(store, profiles, app.state.context_factory(None))
        # This node's job runner: it resumes the jobs a stop left (once their lease is free or
        # expired) and runs the new ones; another node runs a job only when this one lets go.
        runner = JobRunner(store)
        reindex.register(runner)
        app.state.jobs = runner
        await reindex.start_pending(store, runner)
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()
            store.hooks.after_commit.remove(hook)
            if audited:
                await app.state.audit_writer.close()
                app.state.audit_writer = None
                store.hooks.in_tx.remove(record_write)
            if storage is None:
                await store.close()

    app = FastAPI(
        title="FHIR R4 server for care-coordination networks",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by install_swagger_ui, without a CDN
        redoc_url=None,  # ReDoc has no offline bundle here
        description="FHIR R4 (4.0.1) REST API under /fhir. See /fhir/metadata for the CapabilityStatement.",
    )
    profiles = ProfileService(settings)
    problems = _search_parameter_problems(profiles)
    if problems:
        raise StartupError("a SearchParameter of the profiles folder cannot be registered: " + "; ".join(problems))
    log.info("%s", profiles.summary())
    app.state.settings = settings
    app.state.profiles = profiles
    app.state.context_factory = _context_factory(settings, profiles)

    def capability_statement(base_url: str, view: tuple[str, str | None, str | None] = ("full", None, None)) -> bytes:
        """The statement as bytes; `view` is (mode, _summary, _elements) of /metadata."""
        # Stored SearchParameters and profiles change what is listed: they are part of the key.
        search_generation = sum(len(search_registry().params(t)) for t in search_registry().types())
        key = (base_url, search_generation, len(profiles.registry.all("StructureDefinition")))
        return _capability_view(key, view)

    @lru_cache(maxsize=32)
    def _capability_view(key: tuple[str, int, int], view: tuple[str, str | None, str | None]) -> bytes:
        statement = _capability_statement(*key)
        return dumps(statement if view == ("full", None, None) else capability_view(statement, *view))

    @lru_cache(maxsize=16)
    def _capability_statement(base_url: str, _search: int, _profiles: int) -> dict[str, Any]:
        return (
            build_capability_statement(
                ROUTES,
                resource_types(),
                settings,
                base_url,
                search_params=capability_search_params,
                profiles=profiles.supported_profiles,
                operations=OPERATION_DEFINITIONS,
                implementation_guides=profiles.implementation_guides(),
                includes=capability_includes,
                type_operations=type_operations,
            )
        )

    app.state.capability_statement = capability_statement
    for route in ROUTES:
        app.router.routes.append(
            StarletteRoute(
                FHIR_BASE + route.path,
                _endpoint(route.handler),
                methods=[route.method],
                name=f"{route.interaction}:{route.method} {route.path}",
            )
        )
    info = {"title": app.title, "version": app.version, "description": app.description}

    @lru_cache(maxsize=2)
    def _openapi(_search: int) -> dict[str, Any]:
        types = sorted(resource_types())
        return openapi_document(ROUTES, types, FHIR_BASE, info, capability_search_params, type_operations)

    def openapi() -> dict[str, Any]:
        # Built on first use (~0.1 s), again only when stored SearchParameters change the registry.
        return _openapi(sum(len(search_registry().params(t)) for t in search_registry().types()))

    app.openapi = openapi  # type: ignore[method-assign]
    install_swagger_ui(app)
    _install_error_handlers(app)
    install_auth(app, settings)
    if settings.auth == "on":  # with auth off there is nobody to record
        # Outside the auth middleware: refused tokens (401) are audited too; the caller the auth
        # middleware found is read from the request state once the response has been sent.
        app.add_middleware(AuditMiddleware)
    # Added last, so it is outermost: it sees every request (auth refusals included) and gives the
    # request id the audit and the RequestContext read.
    app.add_middleware(AccessLogMiddleware, enabled=settings.access_log)
    return app


def _endpoint(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        response: Response = await handler(request, **request.path_params)
        return response

    return endpoint


def _install_error_handlers(app: FastAPI) -> None:
    async def on_fhir_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FhirError)
        return error_response(request, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        text = {
            404: f"No FHIR endpoint at {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        error = FhirError(exc.status_code, text.get(exc.status_code, str(exc.detail)), code)
        return error_response(request, error)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        return error_response(request, FhirError(400, f"Invalid request: {exc}", "invalid"))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:12]
        log.exception("unexpected error %s on %s %s", ref, request.method, request.url.path)
        return error_response(request, FhirError(500, f"Internal server error (reference {ref})", "exception"))

    app.add_exception_handler(FhirError, on_fhir_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
