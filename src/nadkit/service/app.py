"""The FastAPI application: routes, bearer-token authentication, request size limits, metrics and
JSON error answers.

Every answer that is not a success is ``{"error": "..."}`` with a 4xx status (5xx only for faults of
the service itself, never with a stack trace). Authentication: every path needs
``Authorization: Bearer <token>`` except ``/health`` and the triage page's own files (``/`` and
``/static/...``, which hold no data; the page asks for the token and sends it with its API calls).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nadkit.alerts.values import AlertNotFoundError, StoreError
from nadkit.errors import NadkitError
from nadkit.service.routers import alerts, incidents, models, pictures, score, system
from nadkit.service.schemas import FlowIn
from nadkit.service.scoring import InputError
from nadkit.service.state import Service, Settings
from nadkit.version import __version__

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("nadkit.service") / "static"))
#: paths served without a token: they hold no data
PUBLIC_PATHS = frozenset({"/health", "/", "/index.html", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
)


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def _send_error(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = _error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLargeError(Exception):
    """The request body passed the size limit while being read."""


class AuthMiddleware:
    """Refuses (401) every request to a non-public path without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token):
            await _send_error(
                send,
                401,
                "missing or invalid bearer token",
                [(b"www-authenticate", b'Bearer realm="nadkit"')],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses (413) request bodies larger than ``limit`` bytes, by their declared length or
    while they are read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.limit:,} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "invalid Content-Length header")
                    return
                if declared > self.limit:
                    await _send_error(send, 413, message)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLargeError
            return received

        async def tracked(reply: Message) -> None:
            nonlocal started
            if reply["type"] == "http.response.start":
                started = True
            await send(reply)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLargeError:
            if started:
                raise
            await _send_error(send, 413, message)


class MetricsMiddleware:
    """Counts requests and their latency by route template, and adds the security headers."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(reply: Message) -> None:
            nonlocal status
            if reply["type"] == "http.response.start":
                status = int(reply["status"])
                reply = {**reply, "headers": [*reply.get("headers", []), *SECURITY_HEADERS]}
            await send(reply)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/static" if _public(scope["path"]) else "unmatched")
            self.service.metrics.request(
                scope.get("method", ""), template, status, time.perf_counter() - started
            )


def reject_unknown_query(request: Request) -> None:
    """Refuse (422) query parameters the route does not know: a misspelt filter must not be
    silently ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        known.update(param.alias for param in getattr(current, "query_params", ()))
        pending.extend(getattr(current, "dependencies", ()))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        shown = unknown[0][:40]
        raise HTTPException(
            422,
            f"unknown query parameter {shown!r}" + (f" (known: {', '.join(sorted(known))})" if known else ""),
        )


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _first_line(text: str) -> str:
    stripped = str(text).strip()
    return stripped.splitlines()[0] if stripped else "error"


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        return JSONResponse(
            {"error": _first_line(detail)}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(error)}, status_code=422)

    @app.exception_handler(InputError)
    async def bad_input(_: Request, error: InputError) -> JSONResponse:
        return JSONResponse({"error": _first_line(str(error))}, status_code=error.status)

    @app.exception_handler(AlertNotFoundError)
    async def not_found(_: Request, error: AlertNotFoundError) -> JSONResponse:
        return JSONResponse({"error": _first_line(str(error))}, status_code=404)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, error: StoreError) -> JSONResponse:
        return JSONResponse({"error": _first_line(str(error))}, status_code=422)

    @app.exception_handler(NadkitError)
    async def nadkit_error(_: Request, error: NadkitError) -> JSONResponse:
        log.warning("request failed: %s", error)
        return JSONResponse({"error": _first_line(str(error))}, status_code=409)

    @app.exception_handler(Exception)
    async def fault(request: Request, error: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %r", request.method, request.url.path, error, exc_info=error)
        return JSONResponse({"error": "internal error (see the service log)"}, status_code=500)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    flow = FlowIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components.setdefault("schemas", {})["FlowIn"] = flow
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path == "/health":
                operation["security"] = []
            else:
                operation.setdefault("responses", {}).setdefault(
                    "401",
                    {
                        "description": "missing or invalid bearer token",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                        },
                    },
                )
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings) -> FastAPI:
    """The service application for ``settings``. The active model is loaded now, so a service
    without one fails at start, not on its first request."""
    service = Service(settings)
    service.models.current()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="nadkit alert service",
        version=__version__,
        description=(
            "Score flows, store and triage alerts, record analyst feedback, switch models. "
            "Each scoring request is scored as its own table: features that look across flows "
            "(counters, segments, windows) see only the flows of that request."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.service = service
    _install_error_handlers(app)
    for router in (
        system.router,
        score.router,
        alerts.router,
        incidents.router,
        models.router,
        pictures.router,
    ):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(AuthMiddleware, token=settings.token)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, service=service)

    return app
