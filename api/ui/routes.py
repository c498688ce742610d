"""The dashboard's pages under ``/ui``: thin handlers over :mod:`api.ui.views` and the
domain services, rendered server-side with Jinja2.

Who sees what: ``/ui/owner`` (owners), ``/ui/team`` (model teams), ``/ui/finance``
(finance; the only role that closes, anchors, resolves and exports). Every page checks
the role, and object pages check ownership with the domain's visibility rules, answering
404 for somebody else's object exactly as for a missing one.

Writes are POST forms carrying the session's CSRF token (:mod:`api.ui.auth`); each
commits before it redirects (post/redirect/get), so the next page sees its effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import SessionDep
from api.downloads import stream_export
from api.ui import auth, views
from api.ui.auth import FormDep, LoginRequired, Viewer, ViewerDep, require_role
from ledger.currencies import major_display
from ledger.datasets.service import uses_from_mask
from ledger.errors import DomainError, NotFound, StateError, Unauthorized, ValidationFailed
from ledger.periods.models import PERIOD_STATES, Period
from ledger.reports.amounts import bps_percent
from ledger.reports.exports import ExportRequest
from ledger.rights.service import resolve_dispute
from ledger.settings import get_settings

UI_DIR: Final = Path(__file__).resolve().parent
STATIC_PATH: Final = "/ui/static"
HOME_BY_ROLE: Final = {"owner": "/ui/owner", "model_team": "/ui/team", "finance": "/ui/finance"}
# Pages hold money and keys' owners: never cached, never framed, only our own assets.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=UI_DIR / "templates")


def _money(amount_minor: int | None, currency: str | None, exponent: int | None) -> str:
    if amount_minor is None:
        return "—"
    if exponent is None:
        return f"{amount_minor} minor units"
    return f"{major_display(int(amount_minor), exponent)} {currency or ''}".strip()


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _short(value: str | None, keep: int = 10) -> str:
    """``0x1234…cdef``: enough of a hash or address to recognise it."""
    if not value or len(value) <= 2 * keep:
        return value or "—"
    return f"{value[:keep]}…{value[-4:]}"


templates.env.filters.update(
    money=_money,
    when=_when,
    short=_short,
    bps=bps_percent,
    uses=lambda mask: " + ".join(uses_from_mask(mask)),
    number=lambda value: f"{int(value):,}",
)
templates.env.globals.update(static=STATIC_PATH, csrf_field=auth.CSRF_FIELD)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    viewer: Viewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, template, {"viewer": viewer, **context}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


# --- sign-in --------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    try:
        viewer = auth.get_viewer(request, session)
    except LoginRequired:
        return see_other("/ui/login")
    return see_other(HOME_BY_ROLE.get(viewer.role, "/ui/account"))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return _login_page(request)


def _login_page(request: Request, error: str | None = None) -> HTMLResponse:
    token = auth.login_csrf_token(request)
    response = render(
        request, "login.html", {"error": error, "token": token}, status_code=401 if error else 200
    )
    auth.set_login_csrf_cookie(response, token)
    return response


async def _login_form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    form: Annotated[dict[str, str], Depends(_login_form)],
) -> Response:
    auth.check_login_csrf(request, form.get(auth.CSRF_FIELD))
    try:
        key, account = auth.sign_in(session, form.get("api_key", ""))
    except Unauthorized as exc:
        return _login_page(request, exc.message)
    response = see_other(HOME_BY_ROLE.get(account.role, "/ui/account"))
    auth.start_session(response, key)
    return response


@router.post("/logout")
def logout(form: FormDep) -> Response:
    response = see_other("/ui/login")
    auth.end_session(response)
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, viewer: ViewerDep) -> Response:
    """Roles without a dashboard (admin) land here."""
    return render(request, "account.html", {}, viewer=viewer)


# --- owner ----------------------------------------------------------------------------------


@router.get("/owner", response_class=HTMLResponse)
def owner_home(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    require_role(viewer, "owner")
    addresses = viewer.principal.owner_addresses(session)
    dashboard = views.owner_dashboard(session, addresses)
    return render(request, "owner/home.html", {"d": dashboard}, viewer=viewer)


@router.get("/owner/lines/{period_id}/{address}", response_class=HTMLResponse)
def owner_line(
    request: Request, period_id: uuid.UUID, address: str, session: SessionDep, viewer: ViewerDep
) -> Response:
    require_role(viewer, "owner")
    detail = views.owner_line(
        session,
        viewer.principal.owner_addresses(session),
        period_id,
        address,
        get_settings().effective_eth_rpc_url,
    )
    return render(request, "owner/line.html", {"d": detail}, viewer=viewer)


@router.get("/owner/lines/{period_id}/{address}/statement.pdf")
def owner_statement_pdf(
    period_id: uuid.UUID, address: str, session: SessionDep, viewer: ViewerDep
) -> Response:
    require_role(viewer, "owner")
    views.require_own_address(viewer.principal.owner_addresses(session), period_id, address)
    return stream_export(
        ExportRequest("statement-pdf", "pdf", period=str(period_id), payee=address)
    )


# --- model team -----------------------------------------------------------------------------


@router.get("/team", response_class=HTMLResponse)
def team_home(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    require_role(viewer, "model_team")
    dashboard = views.team_dashboard(session, viewer.principal.account_id)
    return render(request, "team/home.html", {"d": dashboard}, viewer=viewer)


# --- finance --------------------------------------------------------------------------------


def _before(value: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not value:
        return None
    try:
        starts_at, _, period_id = value.partition(",")
        return datetime.fromisoformat(starts_at), uuid.UUID(period_id)
    except ValueError:
        raise ValidationFailed(
            "the page link is malformed; start again from the first page", field="before"
        ) from None


@router.get("/finance", response_class=HTMLResponse)
def finance_home(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    state: Annotated[str | None, Query(max_length=16)] = None,
    model_id: Annotated[uuid.UUID | None, Query()] = None,
    before: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    require_role(viewer, "finance")
    state = state or None
    if state is not None and state not in PERIOD_STATES:
        raise ValidationFailed(
            f"state must be one of {', '.join(PERIOD_STATES)}", field="state", code="state_invalid"
        )
    dashboard = views.finance_dashboard(
        session, state=state, model_id=model_id, before=_before(before)
    )
    today = datetime.now(UTC).date()
    return render(
        request,
        "finance/home.html",
        {
            "d": dashboard,
            "states": PERIOD_STATES,
            "journal_from": today.replace(day=1).isoformat(),
            "journal_to": today.isoformat(),
        },
        viewer=viewer,
    )


def _period(session: Session, period_id: uuid.UUID) -> Period:
    period = session.get(Period, period_id)
    if period is None:
        raise NotFound(f"period {period_id} does not exist", field="period_id")
    return period


def _start_period_job(
    session: Session, viewer: Viewer, period: Period, kind: str, kwargs: dict[str, Any]
) -> str:
    """Start (or join) the period's close or anchor job on the worker; returns its id.

    A job of the period still queued or running is joined rather than doubled (a second
    click, a reload of the form)."""
    from api.tasks import start_period_job

    running = views.latest_jobs(session, [period.id]).get(period.id)
    if running is not None and running.state in ("queued", "running"):
        return running.id
    return str(start_period_job(session, kind, period.id, kwargs, viewer.principal.account_id).id)


@router.post("/finance/periods/{period_id}/close")
def finance_close(
    period_id: uuid.UUID, session: SessionDep, viewer: ViewerDep, form: FormDep
) -> Response:
    require_role(viewer, "finance")
    period = _period(session, period_id)
    if period.state not in ("open", "closing"):
        raise StateError(
            f"period {period.key} is already {period.state}",
            field="period_id",
            code="already_closed",
        )
    anchor = form.get("anchor") == "yes"
    job_id = _start_period_job(session, viewer, period, "close_period", {"anchor": anchor})
    return see_other(f"/ui/finance/jobs/{job_id}")


@router.post("/finance/periods/{period_id}/anchor")
def finance_anchor(
    period_id: uuid.UUID, session: SessionDep, viewer: ViewerDep, form: FormDep
) -> Response:
    require_role(viewer, "finance")
    period = _period(session, period_id)
    if period.state != "closed":
        raise StateError(
            f"period {period.key} is {period.state}; only a closed period is anchored",
            field="period_id",
            code="period_not_closed",
        )
    # A click on a closed period's Anchor button is finance's explicit decision, also after
    # the guardian revoked an earlier attempt (a retried old job never re-anchors by itself).
    job_id = _start_period_job(session, viewer, period, "anchor_period", {"reanchor": True})
    return see_other(f"/ui/finance/jobs/{job_id}")


@router.get("/finance/jobs/{job_id}", response_class=HTMLResponse)
def finance_job(request: Request, job_id: str, session: SessionDep, viewer: ViewerDep) -> Response:
    require_role(viewer, "finance")
    view = views.job_view(session, job_id, None)
    return render(request, "finance/job.html", {"v": view}, viewer=viewer)


@router.get("/jobs/{job_id}.json")
def job_json(job_id: str, session: SessionDep, viewer: ViewerDep) -> Response:
    """What the progress page polls: the job's state and its period's."""
    account = None if viewer.role == "finance" else viewer.principal.account_id
    view = views.job_view(session, job_id, account)
    return JSONResponse(view.as_json(), headers={"Cache-Control": "no-store"})


@router.post("/finance/disputes/{dispute_id}/resolve")
def finance_resolve(
    dispute_id: uuid.UUID, session: SessionDep, viewer: ViewerDep, form: FormDep
) -> Response:
    require_role(viewer, "finance")
    resolve_dispute(
        session,
        dispute_id,
        form.get("resolution", ""),
        form.get("note", ""),
        viewer.principal.account_id,
    )
    session.commit()
    return see_other("/ui/finance#disputes")


@router.get("/finance/exports/settlement")
def finance_export_settlement(
    viewer: ViewerDep,
    period_id: uuid.UUID,
    format: Annotated[str, Query(max_length=16)] = "csv",
) -> Response:
    require_role(viewer, "finance")
    return stream_export(ExportRequest("settlement", format, period=str(period_id)))


@router.get("/finance/exports/journal")
def finance_export_journal(
    viewer: ViewerDep,
    date_from: Annotated[str, Query(alias="from", max_length=10)],
    date_to: Annotated[str, Query(alias="to", max_length=10)],
) -> Response:
    require_role(viewer, "finance")
    return stream_export(ExportRequest("journal", "csv", date_from=date_from, date_to=date_to))


# --- errors and installation ----------------------------------------------------------------

Handler = Callable[[Request, Any], Awaitable[Response]]


def _is_ui(request: Request) -> bool:
    return request.url.path == "/ui" or request.url.path.startswith("/ui/")


def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    if request.url.path.endswith(".json"):
        return JSONResponse({"error": message}, status_code=status_code)
    return render(
        request, "error.html", {"title": title, "message": message}, status_code=status_code
    )


def _ui_errors(api_handler: Handler) -> Handler:
    """Under ``/ui``: a sign-in redirect or an HTML error page; elsewhere the API's
    problem+json. The exception has left the route's dependencies by now, so the
    request's unit of work was rolled back."""

    async def handle(request: Request, exc: Any) -> Response:
        if not _is_ui(request):
            return await api_handler(request, exc)
        if isinstance(exc, Unauthorized):
            response = see_other("/ui/login")
            if isinstance(exc, LoginRequired) and request.cookies.get(auth.SESSION_COOKIE):
                auth.end_session(response)
            return response
        if isinstance(exc, DomainError):
            return _error_page(request, exc.http_status, exc.title, exc.message)
        if isinstance(exc, RequestValidationError):
            return _error_page(request, 422, "Invalid address", "this page address is malformed")
        status = getattr(exc, "status_code", 500)
        return _error_page(
            request, status, "Not found" if status == 404 else "Error", str(exc.detail)
        )

    return handle


def install(app: FastAPI) -> None:
    """Mount the dashboard: its pages, its static files and its error pages (call after
    the API's error handlers are installed)."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=UI_DIR / "static"), name="ui-static")
    for exc_class in (DomainError, RequestValidationError, StarletteHTTPException):
        api_handler = app.exception_handlers[exc_class]
        app.add_exception_handler(exc_class, _ui_errors(api_handler))  # type: ignore[arg-type]
