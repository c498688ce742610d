"""Signing in and out, the session cookie, and CSRF protection of every form."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.api.conftest import ApiPrincipal
from tests.ui.helpers import screenshot, sign_in


def test_a_wrong_key_is_refused_with_the_reason(page: Page) -> None:
    sign_in(page, "uf_00000000_not-a-real-secret-at-all")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("is not known")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "login-refused")
    assert "uf_session" not in {c["name"] for c in page.context.cookies()}


def test_the_session_cookie_is_httponly_strict_and_names_no_key(
    page: Page, principal: Callable[..., ApiPrincipal]
) -> None:
    owner = principal("owner")
    sign_in(page, owner.key)
    expect(page).to_have_url(re.compile(r"/ui/owner$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "uf_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    # uf_<prefix>_<secret>; the secret is base64url and may itself hold "_".
    secret = owner.key.split("_", 2)[2]
    assert secret not in cookie["value"]
    assert page.evaluate("() => document.cookie") == ""  # not readable by scripts


def test_a_form_post_without_the_csrf_token_is_refused(
    page: Page, principal: Callable[..., ApiPrincipal]
) -> None:
    owner = principal("owner")
    sign_in(page, owner.key)
    # The browser's own request context carries the session cookie, like a forged form.
    missing = page.request.post("/ui/logout", form={})
    assert missing.status == 403
    assert "security token" in missing.text()
    wrong = page.request.post("/ui/logout", form={"csrf_token": "x" * 43})
    assert wrong.status == 403
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    foreign = page.request.post(
        "/ui/logout",
        form={"csrf_token": token or ""},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert foreign.status == 403
    # None of them signed us out.
    page.goto("/ui/owner")
    expect(page).to_have_url(re.compile(r"/ui/owner$"))
    # Nor does the sign-in form work without the token its page set.
    refused = page.request.post("/ui/login", form={"api_key": owner.key})
    assert refused.status == 403


def test_sign_out_clears_the_session(page: Page, principal: Callable[..., ApiPrincipal]) -> None:
    owner = principal("owner")
    sign_in(page, owner.key)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    assert "uf_session" not in {c["name"] for c in page.context.cookies()}
    page.goto("/ui/owner")
    expect(page).to_have_url(re.compile(r"/ui/login$"))


def test_revoking_the_key_ends_its_sessions(
    page: Page, principal: Callable[..., ApiPrincipal], db_engine: Engine
) -> None:
    from ledger.access.models import ApiKey
    from ledger.access.service import key_prefix, revoke_api_key

    owner = principal("owner")
    sign_in(page, owner.key)
    with Session(db_engine) as session:
        key = session.exec(select(ApiKey).where(ApiKey.prefix == key_prefix(owner.key))).one()
        revoke_api_key(session, key.id)
        session.commit()
    page.goto("/ui/owner")
    expect(page).to_have_url(re.compile(r"/ui/login$"))


def test_each_role_is_kept_to_its_own_pages(
    page: Page, principal: Callable[..., ApiPrincipal]
) -> None:
    owner = principal("owner")
    sign_in(page, owner.key)
    for path in ("/ui/finance", "/ui/team"):
        response = page.goto(path)
        assert response is not None and response.status == 403
        expect(page.get_by_role("alert")).to_contain_text("signed in as owner")
    screenshot(page, "forbidden")


def test_a_role_without_a_dashboard_is_told_where_to_go(
    page: Page, principal: Callable[..., ApiPrincipal]
) -> None:
    sign_in(page, principal("admin").key)
    expect(page).to_have_url(re.compile(r"/ui/account$"))
    expect(page.get_by_role("main")).to_contain_text("have no dashboard")


def test_unknown_dashboard_pages_are_html_and_the_api_keeps_problem_json(page: Page) -> None:
    missing = page.goto("/ui/no-such-page")
    assert missing is not None and missing.status == 404
    assert missing.headers["content-type"].startswith("text/html")
    api = page.request.get("/v1/no-such-route")
    assert api.status == 404
    assert api.headers["content-type"] == "application/problem+json"
    anonymous = page.goto("/ui/finance")
    assert anonymous is not None
    expect(page).to_have_url(re.compile(r"/ui/login$"))
