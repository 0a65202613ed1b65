"""The timed request both API clients make: what the metrics' observer is told, and no answer
raised as Unanswered (each client words it as its own error)."""

import asyncio

import httpx
import pytest
import respx

from app.upstream import Unanswered, timed_request

BASE = "https://upstream.test"


class Observed(list[tuple[str, str]]):
    def __call__(self, operation: str, seconds: float, outcome: str) -> None:
        assert seconds >= 0
        self.append((operation, outcome))


@pytest.fixture
async def http():
    async with httpx.AsyncClient(base_url=BASE, timeout=2) as client:
        yield client


@respx.mock
async def test_an_answer_is_returned_and_observed_by_its_status(http):
    respx.get(f"{BASE}/x").respond(503)
    observed = Observed()

    response = await timed_request(http, observed, "op", "GET", "/x")

    assert response.status_code == 503 and observed == [("op", "503")]


@respx.mock
async def test_a_timeout_is_unanswered_and_observed_as_timeout(http):
    respx.get(f"{BASE}/x").mock(side_effect=httpx.ReadTimeout("slow"))
    observed = Observed()

    with pytest.raises(Unanswered) as caught:
        await timed_request(http, observed, "op", "GET", "/x")

    assert caught.value.timed_out and observed == [("op", "timeout")]


@respx.mock
async def test_a_connection_error_is_unanswered_and_names_its_kind(http):
    respx.get(f"{BASE}/x").mock(side_effect=httpx.ConnectError("refused"))
    observed = Observed()

    with pytest.raises(Unanswered) as caught:
        await timed_request(http, observed, "op", "GET", "/x")

    assert (caught.value.timed_out, caught.value.kind) == (False, "ConnectError")
    assert observed == [("op", "connection_error")]


@respx.mock
async def test_a_cancelled_request_is_observed_as_cancelled(http):
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        return httpx.Response(200)

    respx.get(f"{BASE}/x").mock(side_effect=hang)
    observed = Observed()
    task = asyncio.create_task(timed_request(http, observed, "op", "GET", "/x"))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert observed == [("op", "cancelled")]
