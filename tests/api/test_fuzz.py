"""Schemathesis fuzzes the API against its own OpenAPI schema (issue 5, "Bad input").

Every operation under ``/v1`` (the ``/ui`` HTML pages are excluded) gets a bounded,
derandomized number of generated requests, sent once as a finance principal and once as a
model team, so that authorized paths are exercised and not only the 401 answer; half the
examples are schemathesis' negative cases (wrong types, missing or extra fields). For every
answer: never a 5xx, and every 4xx is ``application/problem+json`` carrying ``type``,
``title``, ``status`` (equal to the HTTP status) and ``detail``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.api.conftest import ApiPrincipal

Make = Callable[..., ApiPrincipal]
MAX_EXAMPLES = 25


@pytest.fixture(scope="session")
def fuzz_schema(api_app):  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", api_app)
    return schema.exclude(path_regex=r"^/ui")


@pytest.fixture
def fuzz_headers(principal: Make) -> dict[str, dict[str, str]]:
    """Real API keys of a finance principal and a model team."""
    return {role: principal(role).headers for role in ("finance", "model_team")}


def _check(response, case) -> str | None:  # type: ignore[no-untyped-def]
    """What is wrong with one answer, or None."""
    where = f"{case.operation.method.upper()} {case.operation.path}"
    status = response.status_code
    if status == 503 and case.operation.path == "/readyz":
        return None  # readiness: 503 is its documented "not ready" (e.g. no chain here)
    if status >= 500:
        return f"{where} → {status}: {response.text[:300]}"
    if 400 <= status < 500:
        content_type = response.headers.get("content-type", "")
        if isinstance(content_type, list):
            content_type = content_type[0] if content_type else ""
        if not content_type.startswith("application/problem+json"):
            return f"{where} → {status} {content_type}: {response.text[:200]}"
        body = response.json()
        missing = [k for k in ("type", "title", "status", "detail") if k not in body]
        if missing or body["status"] != status:
            return f"{where} → {status} problem without {missing}: {str(body)[:200]}"
    return None


def test_the_api_never_answers_5xx_and_every_4xx_is_a_problem(
    fuzz_schema, fuzz_headers: dict[str, dict[str, str]]
) -> None:  # type: ignore[no-untyped-def]
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            for headers in fuzz_headers.values():
                response = case.call(headers={**(case.headers or {}), **headers})
                statuses[response.status_code] += 1
                problem = _check(response, case)
                if problem is not None:
                    failures.append(problem)

        run()
    assert not failures, "\n".join(sorted(set(failures))[:40])
    # The keys are real: authorized paths were exercised, not only the 401 answer.
    assert sum(n for code, n in statuses.items() if code < 300) > 50, statuses
    assert statuses[401] < sum(statuses.values()) / 4, statuses
