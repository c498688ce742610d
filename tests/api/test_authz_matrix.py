"""The authorization matrix: every route of the app × every kind of caller.

``ACCESS`` states, per route, which roles may call it, whose object it names (the
*tenant*) and which roles see every tenant's objects. The matrix then asserts, for each
route and each caller in the world below (two owners, two model teams, finance, admin):

- anonymous → 401 (dashboard pages: a 303 to the sign-in page; public routes: never
  401/403);
- a role not admitted → 403;
- an admitted caller that is neither the tenant nor of a role that sees everything → 404,
  the same answer as for an object that does not exist;
- an admitted caller otherwise → 2xx on GET (writes are exercised by each router's tests);
- no 2xx answer to another tenant contains an id or address of the world's objects.

API routes authenticate with the API key; dashboard routes (``/ui``) with the session
cookie of a real sign-in and the session's CSRF token on forms. Routes are enumerated from
the application itself, so a new route without an entry in ``ACCESS`` fails
:func:`test_every_route_has_an_access_rule` until someone decides who may call it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from api import jobs
from api.tasks import generate_export
from ledger.access.models import ApiKey
from ledger.datasets.service import open_disputes
from ledger.models.models import Model
from ledger.owners.service import get_owner_by_address
from tests.api.conftest import ApiPrincipal
from tests.api.test_statements_api import _settle
from tests.ledger.factories_rights import KeyedOwner, make_dataset, random_files
from tests.ledger.factories_settlement import closed_period

Make = Callable[..., ApiPrincipal]
CALLERS = ("owner_a", "owner_b", "team_a", "team_b", "finance", "admin")
UI_PREFIX = "/ui"


@dataclass(frozen=True)
class Access:
    """Who may call a route. ``roles``: admitted roles (others get 403); ``tenant``: the
    caller whose object the request names (others of an admitted role get 404 unless their
    role is in ``sees_all``); ``query``/``body``/``form``: the request, ``{name}`` filled
    from the world's ids (and ``{csrf}`` with the caller's form token); ``probe``: expect
    2xx for admitted callers (GET only); ``anonymous``: what a caller without credentials
    gets, when it is not the default; ``ids``: path parameters that take another of the
    world's ids than their own name."""

    roles: frozenset[str]
    tenant: str | None = None
    sees_all: frozenset[str] = frozenset()
    public: bool = False
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    form: dict[str, str] | None = None
    probe: bool = True
    anonymous: int | None = None
    # Path parameters filled from another of the world's ids: {parameter: id name}.
    ids: dict[str, str] = field(default_factory=dict)


def rule(roles: str, tenant: str | None = None, sees_all: str = "", **kw: Any) -> Access:
    return Access(frozenset(roles.split()), tenant, frozenset(sees_all.split()), **kw)


PUBLIC = Access(frozenset(), public=True)
EVERYONE = "owner model_team finance admin"
CSRF = {"csrf_token": "{csrf}"}
FRESH_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SIGNATURE = {"signer": "{address}", "signature": "0x00", "nonce": 0}
AGREEMENT = {
    "royalty_rate_bps": 1_000,
    "training_share_bps": 5_000,
    "min_payout_minor": 0,
    "currency": "EUR",
    "effective_from": "2030-01-01T00:00:00Z",
}
REVENUE = {
    "model_id": "{model_id}",
    "amount_minor": 100,
    "currency": "EUR",
    "external_ref": "authz",
    "occurred_at": "2026-03-15T00:00:00Z",
}
LINEAGE = {
    "eventType": "START",
    "eventTime": "2026-03-15T00:00:00Z",
    "run": {"runId": "0194a3b1-0000-7000-8000-000000000001"},
    "job": {"namespace": "usefirst", "name": "{model_id}"},
    "producer": "https://example.org/authz",
}

ACCESS: dict[tuple[str, str], Access] = {
    # operations and documentation
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): Access(frozenset(), public=True, probe=False),  # 503 without a chain
    ("GET", "/v1/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/v1/lineage/facets"): PUBLIC,
    ("GET", "/v1/me"): rule(EVERYONE),
    # jobs: one's own; finance and admin all
    ("GET", "/v1/jobs"): rule(EVERYONE),
    ("GET", "/v1/jobs/{job_id}"): rule(EVERYONE, "team_a", "finance admin"),
    # periods (finance writes; teams read their models' periods)
    ("GET", "/v1/periods"): rule("finance model_team admin"),
    ("GET", "/v1/periods/{period_id}"): rule("finance model_team admin", "team_a", "finance admin"),
    ("GET", "/v1/periods/{period_id}/statement"): rule(
        "finance model_team admin", "team_a", "finance admin"
    ),
    ("POST", "/v1/periods/{period_id}/close"): rule("finance", body={"anchor": False}),
    ("POST", "/v1/periods/{period_id}/anchor"): rule("finance"),
    ("POST", "/v1/periods/{period_id}/adjustments"): rule("finance", body={}),
    # usage, revenue, quarantine, lineage
    ("POST", "/v1/usage/training"): rule(
        "model_team", "team_a", query={"model_id": "{model_id}"}, body=[]
    ),
    ("POST", "/v1/usage/retrievals"): rule(
        "model_team", "team_a", query={"model_id": "{model_id}"}, body=[]
    ),
    ("GET", "/v1/usage/summary"): rule(
        "model_team finance",
        "team_a",
        "finance",
        query={"model_id": "{model_id}", "period": "2026-03"},
    ),
    ("POST", "/v1/revenue"): rule("model_team", "team_a", body=REVENUE),
    ("GET", "/v1/revenue"): rule(
        "model_team finance", "team_a", "finance", query={"model_id": "{model_id}"}
    ),
    ("GET", "/v1/quarantine"): rule(
        "model_team finance", "team_a", "finance", query={"model_id": "{model_id}"}
    ),
    ("POST", "/v1/quarantine/{quarantine_id}/dismiss"): rule("finance", body={"note": "n"}),
    ("POST", "/v1/lineage"): rule("model_team", "team_a", body=LINEAGE),
    # admin: accounts and keys
    ("POST", "/v1/accounts"): rule("admin", body={"role": "owner", "display_name": "x"}),
    ("GET", "/v1/accounts"): rule("admin"),
    ("GET", "/v1/accounts/{account_id}"): rule("admin"),
    ("POST", "/v1/accounts/{account_id}/disable"): rule("admin"),
    ("POST", "/v1/accounts/{account_id}/keys"): rule("admin", body={}),
    ("GET", "/v1/accounts/{account_id}/keys"): rule("admin"),
    ("POST", "/v1/accounts/{account_id}/keys/{key_id}/revoke"): rule("admin"),
    # owners: addresses, datasets, rights, usage, disputes, statements, claims
    # (a fresh address: the challenge echoes the one asked about)
    ("GET", "/v1/owners/addresses/challenge"): rule("owner", query={"address": FRESH_ADDRESS}),
    ("POST", "/v1/owners/addresses"): rule(
        "owner", body={"address": "{address}", "signature": "0x00"}
    ),
    ("GET", "/v1/owners/addresses"): rule("owner"),
    ("POST", "/v1/datasets"): rule("owner", body={}),
    ("GET", "/v1/datasets"): rule("owner finance"),
    ("GET", "/v1/datasets/{dataset_id}"): rule("owner finance", "owner_a", "finance"),
    ("PATCH", "/v1/datasets/{dataset_id}"): rule("owner", "owner_a", body={}),
    ("GET", "/v1/datasets/{dataset_id}/files"): rule("owner finance", "owner_a", "finance"),
    ("GET", "/v1/datasets/{dataset_id}/typed-data"): rule(
        "owner finance", "owner_a", "finance", query={"signer": "{address}"}
    ),
    ("POST", "/v1/datasets/{dataset_id}/confirmations"): rule("owner", "owner_a", body=SIGNATURE),
    ("POST", "/v1/datasets/{dataset_id}/revocations"): rule("owner", "owner_a", body=SIGNATURE),
    ("GET", "/v1/datasets/{dataset_id}/usage"): rule("owner finance", "owner_a", "finance"),
    ("GET", "/v1/disputes"): rule("owner finance"),
    ("GET", "/v1/disputes/{dispute_id}"): rule("owner finance", "owner_a", "finance"),
    ("POST", "/v1/disputes/{dispute_id}/resolve"): rule(
        "finance", body={"resolution": "upheld", "note": "n"}
    ),
    ("GET", "/v1/statements"): rule("owner finance"),
    ("GET", "/v1/statements/{period_id}/{address}"): rule("owner finance", "owner_a", "finance"),
    ("GET", "/v1/claims/{period_id}/{address}"): rule("owner finance", "owner_a", "finance"),
    # model teams: models and agreements
    ("POST", "/v1/models"): rule("model_team", body={"name": "m"}),
    ("GET", "/v1/models"): rule("model_team finance"),
    ("GET", "/v1/models/{model_id}"): rule("model_team finance", "team_a", "finance"),
    ("POST", "/v1/models/{model_id}/agreements"): rule("model_team", "team_a", body=AGREEMENT),
    ("GET", "/v1/models/{model_id}/agreements"): rule("model_team finance", "team_a", "finance"),
    ("GET", "/v1/models/{model_id}/agreements/in-force"): rule(
        "model_team finance", "team_a", "finance"
    ),
    # finance: exports and reconciliation findings
    ("GET", "/v1/exports/settlement"): rule("finance", query={"period": "{period_id}"}),
    ("GET", "/v1/exports/journal"): rule(
        "finance", query={"from": "2026-03-01", "to": "2026-03-31"}
    ),
    ("GET", "/v1/exports/statements/{period_id}.json"): rule("finance"),
    ("GET", "/v1/exports/statements/{period_id}/payees/{address}.pdf"): rule("finance"),
    ("POST", "/v1/exports"): rule("finance", body={"kind": "settlement", "period": "{period_id}"}),
    ("GET", "/v1/exports/{job_id}/download"): rule("finance", ids={"job_id": "export_job_id"}),
    ("GET", "/v1/reconciliation/findings"): rule("finance"),
    # the dashboard (session cookie)
    ("GET", "/ui"): rule(EVERYONE),
    ("GET", "/ui/login"): PUBLIC,
    ("POST", "/ui/login"): Access(
        frozenset(),
        public=True,
        form={"api_key": "uf_00000000_wrong", **CSRF},
        probe=False,
        anonymous=401,  # the sign-in page again, saying the key is not known
    ),
    ("POST", "/ui/logout"): rule(EVERYONE, form=CSRF, probe=False),
    ("GET", "/ui/account"): rule(EVERYONE),
    ("GET", "/ui/owner"): rule("owner"),
    ("GET", "/ui/owner/lines/{period_id}/{address}"): rule("owner", "owner_a"),
    ("GET", "/ui/owner/lines/{period_id}/{address}/statement.pdf"): rule("owner", "owner_a"),
    ("GET", "/ui/team"): rule("model_team"),
    ("GET", "/ui/finance"): rule("finance"),
    ("POST", "/ui/finance/periods/{period_id}/close"): rule("finance", form=CSRF),
    ("POST", "/ui/finance/periods/{period_id}/anchor"): rule("finance", form=CSRF),
    ("POST", "/ui/finance/disputes/{dispute_id}/resolve"): rule(
        "finance", form={"resolution": "upheld", "note": "n", **CSRF}
    ),
    ("GET", "/ui/finance/jobs/{job_id}"): rule("finance"),
    ("GET", "/ui/jobs/{job_id}.json"): rule(EVERYONE, "team_a", "finance"),
    ("GET", "/ui/finance/exports/settlement"): rule("finance", query={"period_id": "{period_id}"}),
    ("GET", "/ui/finance/exports/journal"): rule(
        "finance", query={"from": "2026-03-01", "to": "2026-03-31"}
    ),
}


def _walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, full path) of every route, through included routers at any depth."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # FastAPI ≥ 0.16x keeps included routers as nodes
            yield from _walk(inner.routes, prefix + route.include_context.prefix)
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                yield method, prefix + route.path


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    found = set(_walk(app.routes))
    for path, operations in app.openapi()["paths"].items():
        found |= {(method.upper(), path) for method in operations}
    return found


def test_every_route_has_an_access_rule(api_app: FastAPI) -> None:
    routes = app_routes(api_app)
    missing = sorted(routes - ACCESS.keys())
    stale = sorted(ACCESS.keys() - routes)
    assert not missing, f"routes without an entry in ACCESS (decide who may call them): {missing}"
    assert not stale, f"entries in ACCESS for routes that no longer exist: {stale}"


# --- the world ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """One caller: its role (None: anonymous), API headers and a dashboard client that
    holds its session cookie, with the CSRF token its forms carry."""

    name: str
    role: str | None
    headers: dict[str, str]
    ui: TestClient
    csrf: str


@dataclass(frozen=True)
class World:
    callers: dict[str, Caller]
    anonymous: Caller
    ids: dict[str, str]

    @property
    def secrets(self) -> list[str]:
        """What another tenant must never read: every object id and owner A's address."""
        return [
            value.lower()
            for name, value in self.ids.items()
            if name not in ("quarantine_id", "account_id", "key_id")
        ]


_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _signed_in(app: FastAPI, name: str, who: ApiPrincipal | None) -> Caller:
    """A dashboard client signed in through the real form (anonymous: just the form)."""
    ui = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    ui.get(f"{UI_PREFIX}/login")
    csrf = ui.cookies.get("uf_login_csrf") or ""
    if who is None:
        return Caller(name, None, {}, ui, csrf)
    signed = ui.post(f"{UI_PREFIX}/login", data={"api_key": who.key, "csrf_token": csrf})
    assert signed.status_code == 303, signed.text
    token = _CSRF_INPUT.search(ui.get(f"{UI_PREFIX}/account").text)
    assert token is not None, "the signed-in page carries no CSRF token"
    return Caller(name, who.role, who.headers, ui, token.group(1))


def _keyed(session: Session, who: ApiPrincipal) -> KeyedOwner:
    """``who``'s first address with its key, for the rights factories."""
    owner = get_owner_by_address(session, who.address)
    assert owner is not None
    return KeyedOwner(owner, who.wallets[0])


def _world(app: FastAPI, principal: Make, db_engine: Engine) -> World:
    made = {
        "owner_a": principal("owner"),
        "owner_b": principal("owner"),
        "team_a": principal("model_team"),
        "team_b": principal("model_team"),
        "finance": principal("finance"),
        "admin": principal("admin"),
    }
    owner_a, owner_c, team_a = made["owner_a"], principal("owner"), made["team_a"]
    period = closed_period(db_engine, {owner_a.address: 1})
    _settle(db_engine, period)
    with Session(db_engine, expire_on_commit=False) as session:
        model = session.get(Model, period.model_id)
        assert model is not None
        model.account_id = team_a.account_id
        session.add(model)
        files = random_files()
        dataset = make_dataset(session, owners=[_keyed(session, owner_a)], files=files)
        # Owner C claims the same content: a dispute owner A sees from the other side.
        copy = make_dataset(session, owners=[_keyed(session, owner_c)], files=files)
        dispute = open_disputes(session, copy.id)[0]
        key_id = session.execute(
            select(col(ApiKey.id)).where(col(ApiKey.account_id) == team_a.account_id)
        ).scalar_one()
        job = jobs.create_job(session, "authz", {}, team_a.account_id)
        export = jobs.create_job(
            session,
            "export",
            {"kind": "settlement", "format": "csv", "period": str(period.period_id)},
            made["finance"].account_id,
        )
        session.commit()
    generate_export(export.id)  # the worker's task, run here: the file exists for the probe
    ids = {
        "account_id": str(team_a.account_id),
        "key_id": str(key_id),
        "dataset_id": str(dataset.id),
        "dispute_id": str(dispute.id),
        "model_id": str(period.model_id),
        "period_id": str(period.period_id),
        "address": owner_a.address,
        "job_id": job.id,
        "export_job_id": export.id,
        "quarantine_id": "1",
    }
    callers = {name: _signed_in(app, name, who) for name, who in made.items()}
    return World(callers, _signed_in(app, "anonymous", None), ids)


# --- the matrix ---------------------------------------------------------------------------


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _call(
    client: TestClient, method: str, path: str, access: Access, world: World, caller: Caller
) -> Any:
    values = {
        **world.ids,
        **{name: world.ids[source] for name, source in access.ids.items()},
        "csrf": caller.csrf,
    }
    kwargs: dict[str, Any] = {"params": _fill(access.query, values)}
    if path.startswith(UI_PREFIX):
        client = caller.ui
        if access.form is not None:
            kwargs["data"] = _fill(access.form, values)
    else:
        kwargs["headers"] = caller.headers
        if method in ("POST", "PATCH", "PUT") and access.body is not None:
            kwargs["json"] = _fill(access.body, values)
    return client.request(method, path.format(**values), **kwargs)


def _refusal(access: Access, caller: Caller) -> int | None:
    """The status refusing ``caller``, or None when it is admitted to the object."""
    if caller.role is None:
        return 401
    if caller.role not in access.roles:
        return 403
    if access.tenant is None or caller.name == access.tenant or caller.role in access.sees_all:
        return None
    return 404


def _check(response: Any, path: str, want: int | None, probe: bool) -> str | None:
    """What is wrong with ``response`` (None: nothing)."""
    status = response.status_code
    ui = path.startswith(UI_PREFIX)
    if want == 401 and ui:  # the dashboard sends anonymous visitors to its sign-in page
        location = response.headers.get("location", "")
        return None if status == 303 and location.endswith("/ui/login") else f"{status}, want 303"
    if want is not None:
        if status != want:
            return f"{status}, want {want}: {response.text[:200]}"
        if not ui and response.headers.get("content-type") != "application/problem+json":
            return f"{status} is not problem+json"
        return None
    if status in (401, 403, 404) or (ui and response.headers.get("location") == "/ui/login"):
        return f"{status}, want access: {response.text[:200]}"
    if probe and not (200 <= status < 300 or (ui and status == 303)):
        return f"{status}, want 2xx: {response.text[:200]}"
    return None


def test_every_route_enforces_its_access_rule(
    client: TestClient, api_app: FastAPI, principal: Make, db_engine: Engine
) -> None:
    world = _world(api_app, principal, db_engine)
    failures: list[str] = []
    for method, path in sorted(app_routes(api_app) & ACCESS.keys()):
        access = ACCESS[(method, path)]
        probe = access.probe and method == "GET"
        anonymous = _call(client, method, path, access, world, world.anonymous)
        if access.public:
            status = anonymous.status_code
            if access.anonymous is not None:
                problem = (
                    None if status == access.anonymous else f"{status}, want {access.anonymous}"
                )
            elif status in (401, 403):
                problem = f"{status} for a public route"
            else:
                problem = _check(anonymous, path, None, probe)
            if problem:
                failures.append(f"{method} {path} anonymous: {problem}")
            continue
        if problem := _check(anonymous, path, 401, probe=False):
            failures.append(f"{method} {path} anonymous: {problem}")
        for name in CALLERS:
            caller = world.callers[name]
            want = _refusal(access, caller)
            if want is None and method != "GET":
                continue  # an admitted write would change the world; routers test writes
            response = _call(client, method, path, access, world, caller)
            if problem := _check(response, path, want, probe):
                failures.append(f"{method} {path} as {name} ({caller.role}): {problem}")
            if name in ("owner_b", "team_b") and 200 <= response.status_code < 300:
                text = response.text.lower()
                if leaked := [s for s in world.secrets if s in text]:
                    failures.append(f"{method} {path} as {name}: shows another tenant's {leaked}")
    assert not failures, "\n".join(failures)
