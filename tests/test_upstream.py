"""The timed request both API clients make: what the metrics' observer is told, and no answer
raised as Unanswered (each client words it as its own error)."""

import asyncio

import httpx
import pytest
import respx

from app.kit.upstream import Unanswered, timed_request

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


@pytest.mark.parametrize(
    ("error", "timed_out", "outcome"),
    [
        (httpx.ReadTimeout("slow"), True, "timeout"),
        (httpx.ConnectError("refused"), False, "connection_error"),
    ],
)
@respx.mock
async def test_no_answer_is_unanswered_and_observed_by_its_kind(
    http, error: httpx.TransportError, timed_out: bool, outcome: str
):
    respx.get(f"{BASE}/x").mock(side_effect=error)
    observed = Observed()

    with pytest.raises(Unanswered) as caught:
        await timed_request(http, observed, "op", "GET", "/x")

    assert (caught.value.timed_out, caught.value.kind) == (timed_out, type(error).__name__)
    assert observed == [("op", outcome)]


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
