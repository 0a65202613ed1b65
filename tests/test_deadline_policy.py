"""The one deadline policy every job worker applies: an error is retried with backoff until the
deadline of the job's current stage and given up after it; a rate limit is waited out whatever
the deadline. `JobWorker` applies it to errors no stage expected. A fake clock throughout."""

import pytest

from app.config import Settings
from app.jobs import Job
from app.kit.queues import QueueRepository
from app.store import DONE, PENDING, Store
from app.worker import Deadline, JobWorker, RetryPolicy
from tests.support.units import FakeClock, step, unit_settings

POLICY = RetryPolicy(base=1.0, cap=60.0)
WINDOW = 600.0
QUEUE = "outbound"  # a queue every store backend knows


def window_from(clock: FakeClock, attempts: int = 1) -> Deadline:
    return Deadline(since=clock(), seconds=WINDOW, attempts=attempts)


# The policy ---------------------------------------------------------------------------------


def test_an_error_before_the_deadline_is_retried_after_the_attempts_backoff(clock: FakeClock):
    deadline = window_from(clock, attempts=3)  # about 4 s, jittered to 2..4 s
    clock.advance(WINDOW - 1)
    due_at = POLICY.retry_at(deadline, clock())
    assert due_at is not None and clock() + 2.0 <= due_at <= clock() + 4.0


def test_the_backoff_never_exceeds_its_cap(clock: FakeClock):
    due_at = POLICY.retry_at(window_from(clock, attempts=40), clock())
    assert due_at is not None and clock() + 30.0 <= due_at <= clock() + POLICY.cap


def test_an_error_at_the_deadline_is_given_up(clock: FakeClock):
    deadline = window_from(clock)
    clock.advance(WINDOW)
    assert POLICY.retry_at(deadline, clock()) is None


def test_an_error_that_cannot_pass_is_never_retried(clock: FakeClock):
    assert POLICY.retry_at(window_from(clock), clock(), retryable=False) is None


def test_a_rate_limit_is_waited_out_past_the_deadline(clock: FakeClock):
    deadline = window_from(clock)
    clock.advance(WINDOW * 10)
    assert POLICY.retry_at(deadline, clock(), retryable=False, rate_limited=True) is not None


def test_a_wait_the_upstream_asked_for_replaces_the_backoff(clock: FakeClock):
    assert POLICY.retry_at(window_from(clock, attempts=9), clock(), wait=7.0) == clock() + 7.0


# JobWorker applies it to unexpected errors --------------------------------------------------


class Chore(Job):
    started_at: float
    attempts: int = 0
    given_up: str | None = None


class Chores(QueueRepository[Chore]):
    queue = QUEUE
    model = Chore


class BuggyWorker(JobWorker[Chore]):
    """Every `_advance` raises, as a bug would; past the deadline the chore is given up."""

    retry_policy = POLICY

    def __init__(self, settings: Settings, store: Store, clock: FakeClock) -> None:
        super().__init__(settings, Chores(store), clock)

    async def _advance(self, job: Chore) -> float | None:
        job.attempts += 1
        raise RuntimeError("a bug")

    def _deadline(self, job: Chore, now: float) -> Deadline:
        return Deadline(job.started_at, WINDOW, job.attempts)

    def _give_up(self, job: Chore, now: float, what: str) -> float | None:
        job.given_up = what
        return None


@pytest.fixture
async def chore(store: Store, clock: FakeClock) -> BuggyWorker:
    await store.enqueue(QUEUE, "c1", Chore(started_at=clock()).model_dump(mode="json"), clock())
    return BuggyWorker(unit_settings(), store, clock)


async def test_an_unexpected_error_before_the_deadline_reschedules_the_job_after_the_backoff(
    chore: BuggyWorker, store: Store, clock: FakeClock
):
    item = await step(chore, store, QUEUE, clock)
    job = Chore.model_validate(item.data)
    assert item.state == PENDING and clock() + 0.5 <= item.due_at <= clock() + 1.0
    assert (job.history[-1].event, job.given_up) == ("unexpected_error", None)


async def test_an_unexpected_error_past_the_deadline_gives_the_job_up_naming_the_error(
    chore: BuggyWorker, store: Store, clock: FakeClock
):
    await step(chore, store, QUEUE, clock)
    clock.advance(WINDOW)
    item = await step(chore, store, QUEUE, clock)
    job = Chore.model_validate(item.data)
    assert (item.state, job.given_up) == (DONE, "unexpected error (RuntimeError)")
