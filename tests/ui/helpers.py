"""What the dashboard tests do in the browser (sign in, take screenshots, walk the page
with the keyboard) and the usage events they report."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from playwright.sync_api import Page

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 15_000


def sign_in(page: Page, key: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def tab_until(page: Page, matches: Callable[[Page], bool], presses_max: int = 80) -> list[str]:
    """Press Tab from the top of the page until ``matches(page)``; return what got focus
    on the way (tag and text), or fail naming it."""
    page.locator("body").focus()
    seen: list[str] = []
    for _ in range(presses_max):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return e.tagName + ' ' + (e.innerText || e.value || '').trim().slice(0, 40); }"
            )
        )
        if matches(page):
            return seen
    raise AssertionError(f"not reached in {presses_max} Tab presses; focus went: {seen}")


def focus_is_visible(page: Page) -> bool:
    """The focused element draws a focus outline (our :focus-visible style)."""
    return bool(
        page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"
        )
    )


def training_event(
    dataset_id: object, at: datetime, *, quantity: int = 1_000, event_id: str | None = None
) -> dict[str, object]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "run_id": "run-1",
        "dataset_id": str(dataset_id),
        "unit": "tokens",
        "quantity": quantity,
        "epochs": 1,
        "occurred_at": at.isoformat(),
    }


def retrieval_event(dataset_id: object, at: datetime) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "query_id": "q-1",
        "occurred_at": at.isoformat(),
        "chunks": [{"dataset_id": str(dataset_id), "chunk_id": "c-1", "rank": 1}],
    }
