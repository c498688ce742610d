"""Typed HTTP clients for the usefirst API: :class:`UsefirstClient` (sync) and
:class:`AsyncUsefirstClient` (asyncio), both on httpx.

Every route is described once in :class:`~api.sdk.routes.Routes`; each client turns each
builder into a method with the same name, parameters and docstring (``client.me()``,
``await async_client.me()``), and a failed request raises a
:class:`~api.sdk.errors.UsefirstError` subclass built from the problem+json answer.

Retries: transient failures (no answer, 408/425/429/5xx) are retried up to ``retries``
times with exponential backoff (honouring ``Retry-After``) when the call is safe to
repeat: reads; usage and lineage posts (their event ids make a resend count once); and
writes carrying an ``Idempotency-Key``, which the clients generate for every call that
accepts one unless you pass your own.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import httpx

from api.sdk.errors import (
    UsefirstError,
    error_from_response,
    error_from_transport,
    is_transient,
)
from api.sdk.routes import Call, Routes, encode_json
from api.sdk.types import Job, Page

T = TypeVar("T")
P = ParamSpec("P")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
SDK_VERSION = "0.1.0"
JOB_FINAL_STATES = ("succeeded", "failed")
PAGE_LIMIT_MAX = 500


def _base_url(base_url: str) -> str:
    """``http://host:port`` without a trailing slash or ``/v1`` (routes add it)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class _ClientBase(Generic[H]):
    """Configuration and retry policy shared by both clients. ``http_client`` lets you
    pass a configured httpx client (proxies, TLS, a test client); the caller then owns
    it (``close``/``aclose`` leave it open)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 8.0,
        http_client: H | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be ≥ 0")
        self.base_url = _base_url(base_url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._owns_http = http_client is None
        self._http: H = http_client if http_client is not None else self._new_http(timeout_s)

    def _new_http(self, timeout_s: float) -> H:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"usefirst-sdk/{SDK_VERSION} httpx/{httpx.__version__}",
        }

    def _give_up(self, call: Call[Any], error: UsefirstError, attempt: int, retries: int) -> bool:
        return not (call.retry_safe and is_transient(error)) or attempt >= retries

    def _delay_s(self, attempt: int, error: UsefirstError) -> float:
        return backoff_delay_s(
            attempt, self.backoff_initial_s, self.backoff_max_s, error.retry_after_s
        )

    @staticmethod
    def _answer(call: Call[T], response: httpx.Response) -> T:
        if not response.is_success:
            raise error_from_response(response)
        return call.parse(response)


def backoff_delay_s(
    attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None
) -> float:
    """Exponential backoff with jitter for retry number ``attempt`` (0-based): a random
    delay in [d/2, d] for d = min(max_s, initial_s·2^attempt); at least the server's
    ``Retry-After`` when it gave one (capped at ``max_s``)."""
    delay = min(max_s, initial_s * (2 ** min(attempt, 32)))
    delay = delay / 2 + random.random() * delay / 2
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


def _sync(builder: Callable[P, Call[T]]) -> Callable[Concatenate[UsefirstClient, P], T]:
    """A sync client method sending what ``builder`` describes."""

    @functools.wraps(builder)
    def method(self: UsefirstClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(builder(*args, **kwargs))

    return method


def _async(
    builder: Callable[P, Call[T]],
) -> Callable[Concatenate[AsyncUsefirstClient, P], Coroutine[Any, Any, T]]:
    """An async client method sending what ``builder`` describes."""

    @functools.wraps(builder)
    async def method(self: AsyncUsefirstClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run(builder(*args, **kwargs))

    return method


class UsefirstClient(_ClientBase[httpx.Client]):
    """The synchronous client: ``UsefirstClient(base_url, api_key, *, timeout_s=30,
    retries=3, backoff_initial_s=0.25, backoff_max_s=8, http_client=None)``. Thread-safe
    (httpx connection pool); close it, or use it as a context manager."""

    def _new_http(self, timeout_s: float) -> httpx.Client:
        return httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> UsefirstClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, call: Call[T], *, retries: int | None = None) -> T:
        """Send ``call`` (retrying transient failures when safe) and parse the answer."""
        limit = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return self._answer(call, self._send(call))
            except UsefirstError as error:
                if self._give_up(call, error, attempt, limit):
                    raise
                time.sleep(self._delay_s(attempt, error))
                attempt += 1

    def _send(self, call: Call[Any]) -> httpx.Response:
        try:
            return self._http.request(
                call.method,
                self.base_url + call.path,
                params=call.params,
                content=call.content,
                headers={**self._headers(), **call.headers},
                timeout=self.timeout_s,
            )
        except httpx.TransportError as error:
            raise error_from_transport(error) from error

    def iter_all(self, list_method: Callable[..., Page[T]], /, **filters: Any) -> Iterator[T]:
        """Every item of a list route, fetching pages as needed:
        ``client.iter_all(client.list_periods, model_id=m)``."""
        cursor: str | None = None
        while True:
            page = list_method(**filters, cursor=cursor, limit=PAGE_LIMIT_MAX)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait_for_job(self, job_id: str, *, timeout_s: float = 120.0, poll_s: float = 0.5) -> Job:
        """Poll until the job succeeded or failed (returned either way); raises
        ``TimeoutError`` when it is still running after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job.state in JOB_FINAL_STATES or time.monotonic() >= deadline:
                return _final(job, timeout_s)
            time.sleep(poll_s)

    # --- every route (api.sdk.routes.Routes), same name, parameters and docstring ---

    health = _sync(Routes.health)
    me = _sync(Routes.me)
    report_training = _sync(Routes.report_training)
    report_retrievals = _sync(Routes.report_retrievals)
    send_lineage = _sync(Routes.send_lineage)
    lineage_facets = _sync(Routes.lineage_facets)
    usage_summary = _sync(Routes.usage_summary)
    list_quarantine = _sync(Routes.list_quarantine)
    dismiss_quarantined = _sync(Routes.dismiss_quarantined)
    record_revenue = _sync(Routes.record_revenue)
    list_revenue = _sync(Routes.list_revenue)
    create_model = _sync(Routes.create_model)
    list_models = _sync(Routes.list_models)
    get_model = _sync(Routes.get_model)
    create_agreement = _sync(Routes.create_agreement)
    list_agreements = _sync(Routes.list_agreements)
    agreement_in_force = _sync(Routes.agreement_in_force)
    address_challenge = _sync(Routes.address_challenge)
    link_address = _sync(Routes.link_address)
    list_addresses = _sync(Routes.list_addresses)
    register_dataset = _sync(Routes.register_dataset)
    list_datasets = _sync(Routes.list_datasets)
    get_dataset = _sync(Routes.get_dataset)
    update_dataset = _sync(Routes.update_dataset)
    list_dataset_files = _sync(Routes.list_dataset_files)
    typed_data = _sync(Routes.typed_data)
    confirm_dataset = _sync(Routes.confirm_dataset)
    revoke_dataset = _sync(Routes.revoke_dataset)
    dataset_usage = _sync(Routes.dataset_usage)
    list_disputes = _sync(Routes.list_disputes)
    get_dispute = _sync(Routes.get_dispute)
    resolve_dispute = _sync(Routes.resolve_dispute)
    list_statement_lines = _sync(Routes.list_statement_lines)
    get_statement_line = _sync(Routes.get_statement_line)
    get_claim = _sync(Routes.get_claim)
    list_periods = _sync(Routes.list_periods)
    get_period = _sync(Routes.get_period)
    get_statement = _sync(Routes.get_statement)
    close_period = _sync(Routes.close_period)
    anchor_period = _sync(Routes.anchor_period)
    add_adjustment = _sync(Routes.add_adjustment)
    get_job = _sync(Routes.get_job)
    list_jobs = _sync(Routes.list_jobs)
    export_settlement = _sync(Routes.export_settlement)
    export_journal = _sync(Routes.export_journal)
    export_statement_json = _sync(Routes.export_statement_json)
    export_statement_pdf = _sync(Routes.export_statement_pdf)
    create_export = _sync(Routes.create_export)
    download_export = _sync(Routes.download_export)
    list_findings = _sync(Routes.list_findings)
    create_account = _sync(Routes.create_account)
    list_accounts = _sync(Routes.list_accounts)
    get_account = _sync(Routes.get_account)
    disable_account = _sync(Routes.disable_account)
    issue_api_key = _sync(Routes.issue_api_key)
    list_api_keys = _sync(Routes.list_api_keys)
    revoke_api_key = _sync(Routes.revoke_api_key)


class AsyncUsefirstClient(_ClientBase[httpx.AsyncClient]):
    """The asyncio client: the same methods as :class:`UsefirstClient`, awaited."""

    def _new_http(self, timeout_s: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncUsefirstClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def run(self, call: Call[T], *, retries: int | None = None) -> T:
        """Send ``call`` (retrying transient failures when safe) and parse the answer."""
        limit = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return self._answer(call, await self._send(call))
            except UsefirstError as error:
                if self._give_up(call, error, attempt, limit):
                    raise
                await asyncio.sleep(self._delay_s(attempt, error))
                attempt += 1

    async def _send(self, call: Call[Any]) -> httpx.Response:
        try:
            return await self._http.request(
                call.method,
                self.base_url + call.path,
                params=call.params,
                content=call.content,
                headers={**self._headers(), **call.headers},
                timeout=self.timeout_s,
            )
        except httpx.TransportError as error:
            raise error_from_transport(error) from error

    async def iter_all(
        self, list_method: Callable[..., Coroutine[Any, Any, Page[T]]], /, **filters: Any
    ) -> AsyncIterator[T]:
        """Every item of a list route: ``async for p in client.iter_all(client.list_periods)``."""
        cursor: str | None = None
        while True:
            page = await list_method(**filters, cursor=cursor, limit=PAGE_LIMIT_MAX)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait_for_job(
        self, job_id: str, *, timeout_s: float = 120.0, poll_s: float = 0.5
    ) -> Job:
        """See :meth:`UsefirstClient.wait_for_job`."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = await self.get_job(job_id)
            if job.state in JOB_FINAL_STATES or time.monotonic() >= deadline:
                return _final(job, timeout_s)
            await asyncio.sleep(poll_s)

    # --- every route (api.sdk.routes.Routes), awaited ---

    health = _async(Routes.health)
    me = _async(Routes.me)
    report_training = _async(Routes.report_training)
    report_retrievals = _async(Routes.report_retrievals)
    send_lineage = _async(Routes.send_lineage)
    lineage_facets = _async(Routes.lineage_facets)
    usage_summary = _async(Routes.usage_summary)
    list_quarantine = _async(Routes.list_quarantine)
    dismiss_quarantined = _async(Routes.dismiss_quarantined)
    record_revenue = _async(Routes.record_revenue)
    list_revenue = _async(Routes.list_revenue)
    create_model = _async(Routes.create_model)
    list_models = _async(Routes.list_models)
    get_model = _async(Routes.get_model)
    create_agreement = _async(Routes.create_agreement)
    list_agreements = _async(Routes.list_agreements)
    agreement_in_force = _async(Routes.agreement_in_force)
    address_challenge = _async(Routes.address_challenge)
    link_address = _async(Routes.link_address)
    list_addresses = _async(Routes.list_addresses)
    register_dataset = _async(Routes.register_dataset)
    list_datasets = _async(Routes.list_datasets)
    get_dataset = _async(Routes.get_dataset)
    update_dataset = _async(Routes.update_dataset)
    list_dataset_files = _async(Routes.list_dataset_files)
    typed_data = _async(Routes.typed_data)
    confirm_dataset = _async(Routes.confirm_dataset)
    revoke_dataset = _async(Routes.revoke_dataset)
    dataset_usage = _async(Routes.dataset_usage)
    list_disputes = _async(Routes.list_disputes)
    get_dispute = _async(Routes.get_dispute)
    resolve_dispute = _async(Routes.resolve_dispute)
    list_statement_lines = _async(Routes.list_statement_lines)
    get_statement_line = _async(Routes.get_statement_line)
    get_claim = _async(Routes.get_claim)
    list_periods = _async(Routes.list_periods)
    get_period = _async(Routes.get_period)
    get_statement = _async(Routes.get_statement)
    close_period = _async(Routes.close_period)
    anchor_period = _async(Routes.anchor_period)
    add_adjustment = _async(Routes.add_adjustment)
    get_job = _async(Routes.get_job)
    list_jobs = _async(Routes.list_jobs)
    export_settlement = _async(Routes.export_settlement)
    export_journal = _async(Routes.export_journal)
    export_statement_json = _async(Routes.export_statement_json)
    export_statement_pdf = _async(Routes.export_statement_pdf)
    create_export = _async(Routes.create_export)
    download_export = _async(Routes.download_export)
    list_findings = _async(Routes.list_findings)
    create_account = _async(Routes.create_account)
    list_accounts = _async(Routes.list_accounts)
    get_account = _async(Routes.get_account)
    disable_account = _async(Routes.disable_account)
    issue_api_key = _async(Routes.issue_api_key)
    list_api_keys = _async(Routes.list_api_keys)
    revoke_api_key = _async(Routes.revoke_api_key)


def _final(job: Job, timeout_s: float) -> Job:
    if job.state not in JOB_FINAL_STATES:
        raise TimeoutError(f"job {job.id} is still {job.state} after {timeout_s} s")
    return job


__all__ = [
    "AsyncUsefirstClient",
    "Call",
    "Routes",
    "UsefirstClient",
    "backoff_delay_s",
    "encode_json",
]
