"""The dashboard application: `create_app(store, access)` returns the FastAPI app that `tunesafe serve`
runs (and tests drive with the test client or a browser).

Every response carries the security headers below (a CSP that allows scripts and styles from this origin
only, so no inline script can run even if markup got through; no-sniff; frame-deny). When a token is
configured, every page and API call except /login and the static files needs the caller signed in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesafe import __version__
from tunesafe.errors import StoreUnavailable, UserError
from tunesafe.evidence import database
from tunesafe.evidence.store import Store
from tunesafe.web import api, sessions
from tunesafe.web.auth import BEARER_SESSION, COOKIE, CSRF_FIELD, SESSION_SECONDS, Access
from tunesafe.web.drafts import UNSENT_ERROR, unsent_draft
from tunesafe.web.forms import form_fields
from tunesafe.web.pages import evidence, gates, incidents, inventory, models, runs, scans, schedules
from tunesafe.web.run_index import RunStates
from tunesafe.web.templating import page

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold model answers: never left in shared caches
}
OPEN_PATHS = ("/login", "/static/", "/report.css", "/favicon.ico")
REPORT_CSS = (files("tunesafe.reports") / "templates" / "_style.css.j2").read_text(encoding="utf-8")


def create_app(store: Store, access: Access) -> FastAPI:
    states = RunStates()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        states.close()  # the store is the caller's to close

    app = FastAPI(
        lifespan=lifespan,
        title="tunesafe dashboard",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        description="JSON views of the tunesafe evidence store (what the dashboard pages show), and the two "
        "writes: incident updates and control attestations.",
    )
    app.state.store = store
    app.state.access = replace(access, signed_out=partial(sessions.signed_out, store),
                               writes_off=_writes_off(store))
    app.state.run_states = states

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            response = await _signed_in_or_refused(request, call_next)
        except StoreUnavailable as exc:  # the session's sign-out lookup runs here, outside the handlers
            response = await _store_unavailable(request, exc)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(UserError, _user_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, _store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_failed)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.include_router(api.router)
    for module in (inventory, models, runs, gates, incidents, schedules, scans, evidence):
        app.include_router(module.router)
    app.add_api_route("/login", _login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/login", _login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/logout", _logout, methods=["POST"], include_in_schema=False)
    app.add_api_route("/api", _api_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/report.css", _report_css, methods=["GET"], include_in_schema=False)
    app.add_api_route("/favicon.ico", _no_icon, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(files("tunesafe.web") / "static")), name="static")
    return app


def _writes_off(store: Store) -> str | None:
    """Why nothing can be written to `store`, for the 409 every write gets then."""
    if store.write_blocked is not None:
        return f"{store.location}: {store.write_blocked}"
    return f"{store.location} was opened for reading only" if store.read_only else None


async def _signed_in_or_refused(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    access: Access = request.app.state.access
    path = request.url.path
    if not access.host_allowed(request):
        return PlainTextResponse("this dashboard answers only to a loopback host name", status_code=421)
    if access.can_read(request) or path.startswith(OPEN_PATHS):
        return await call_next(request)
    if path.startswith("/api/"):
        return JSONResponse(
            {"detail": "sign in: send Authorization: Bearer TOKEN"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method == "GET":
        # the query too: a shared link to a cell or a run's page names what it shows there
        wanted = f"{path}?{request.url.query}" if request.url.query else path
    elif (unsent := await unsent_draft(request, (incidents.UPDATE_FORM, models.ATTEST_FORM))) is not None:
        wanted, too_long = unsent
        if too_long is not None:
            return page(request, "login.html.j2", {"next": wanted, "error": UNSENT_ERROR, "draft": too_long},
                        status_code=401)
    else:
        return PlainTextResponse("sign in first", status_code=401)
    query = urlencode({"next": wanted}, safe="/", quote_via=quote)
    return RedirectResponse(f"/login?{query}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect through /login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html.j2", {"next": _safe_next(next), "error": None})


async def _login(request: Request) -> Response:
    fields = await form_fields(request)
    access: Access = request.app.state.access
    target = _safe_next(fields.get("next"))
    try:
        cookie = access.sign_in(fields.get("token", ""), fields.get("name", ""))
    except HTTPException as exc:
        return page(
            request, "login.html.j2", {"next": target, "error": exc.detail}, status_code=exc.status_code
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, cookie, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/",
        max_age=SESSION_SECONDS
    )
    return response


async def _logout(request: Request) -> Response:
    fields = await form_fields(request)
    who = request.app.state.access.require_writer(request, fields.get(CSRF_FIELD))
    if who.session != BEARER_SESSION:  # deleting the cookie leaves any copy of it good: revoke it
        sessions.sign_out(request.app.state.store, who.session, who.evidence_actor)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _api_page(request: Request) -> HTMLResponse:
    schema = request.app.openapi()
    endpoints = [
        {
            "method": method.upper(),
            "path": path,
            "summary": op.get("summary", ""),
            "params": [p["name"] for p in op.get("parameters", [])],
            "answer": _answer(op),
        }
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    ]
    return page(request, "api.html.j2", {"endpoints": endpoints})


def _answer(operation: dict[str, Any]) -> str:
    """The documented answer's model name: "RunPage", or "list of InventoryRow"."""
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if schema.get("type") == "array":
        return "list of " + str(schema.get("items", {}).get("$ref", "")).rsplit("/", 1)[-1]
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


def _report_css() -> Response:
    return Response(REPORT_CSS, media_type="text/css")


def _no_icon() -> Response:
    """Pages name an empty icon; a browser showing a JSON answer asks for this one instead."""
    return Response(status_code=204)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str, *, anonymous: bool = False) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return page(request, "error.html.j2", {"status": status, "message": message}, status_code=status,
                anonymous=anonymous)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return _error(request, exc.status_code, str(exc.detail))


async def _user_error(request: Request, exc: UserError) -> Response:
    return _error(request, 400, exc.render())


async def _store_unavailable(request: Request, exc: StoreUnavailable) -> Response:
    # the store failing (a file deleted, corrupted or locked under the running server) is the server's
    # trouble, not a bad request: 503, the one line that names it
    return _error(request, 503, exc.render(), anonymous=True)


async def _database_failed(request: Request, exc: DBAPIError) -> Response:
    """A driver error that reached no Store guard (a query on store.engine): the same one line, never a
    traceback."""
    store: Store = request.app.state.store
    return await _store_unavailable(request, database.connect_error(store.url, exc))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    errors: list[dict[str, Any]] = list(exc.errors())
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
    return _error(request, 422, message or "invalid request")
