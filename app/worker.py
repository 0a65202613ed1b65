"""A leased-queue runner shared by the outbound and inbound workers.

The loop claims due items with a lease (at most `worker_concurrency` in flight), processes each
in its own task and sleeps until woken or `poll_interval_seconds` passes when there is nothing
to do. While an item is being worked on, a heartbeat extends its lease every third of
`lease_seconds`, so a short lease (fast failover when a process dies) never expires under a
slow but live worker. `stop` stops claiming and gives in-flight items a grace period; a
`JobWorker` hands the rest back to the queue when their task is cancelled.

A `JobWorker` applies one deadline policy to an error no stage expected (a bug, a key httpx
cannot send): retried with backoff within the deadline of the job's current stage, the same
window as that stage's own errors, then given up, so nothing stays pending forever.
"""

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from app.config import Settings
from app.jobs import Job
from app.kit.queues import QueueRepository
from app.kit.retry import backoff
from app.store import WorkItem

log = logging.getLogger(__name__)

CLAIM_BATCH = 100
STORE_ERROR_PAUSE = 1.0


@dataclass(frozen=True)
class Deadline:
    """How long a job's current stage may keep retrying: `seconds` from `since`. `attempts`: the
    tries the stage made so far (the backoff grows with it)."""

    since: float
    seconds: float
    attempts: int

    def passed(self, now: float) -> bool:
        return now - self.since >= self.seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with exponential backoff (jittered, `base` doubling up to `cap`) before the deadline;
    give up after it."""

    base: float
    cap: float

    def retry_at(
        self,
        deadline: Deadline,
        now: float,
        *,
        retryable: bool = True,
        rate_limited: bool = False,
        wait: float | None = None,
    ) -> float | None:
        """When to try again after an error (after `wait`, e.g. a Retry-After, else the backoff),
        or None to give up: a rate limit is waited out whatever the deadline, a retryable error
        is retried until the deadline, any other error never."""
        if not rate_limited and (not retryable or deadline.passed(now)):
            return None
        if wait is None:
            wait = backoff(deadline.attempts, base=self.base, cap=self.cap)
        return now + wait


class LeasedQueueWorker(ABC):
    """Runs one queue; subclasses implement `_process` (one item)."""

    name = "work"

    def __init__(
        self,
        settings: Settings,
        queue: QueueRepository[Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._held: dict[asyncio.Task[None], WorkItem] = {}
        self._stopping = False

    @abstractmethod
    async def _process(self, item: WorkItem) -> None: ...

    def wake(self) -> None:
        self._wakeup.set()

    def _start(self, item: WorkItem) -> None:
        task = asyncio.create_task(self._process(item))
        self._inflight.add(task)
        self._held[task] = item
        task.add_done_callback(self._release)

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.name}-heartbeat")
        try:
            await self._dispatch()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _dispatch(self) -> None:
        concurrency = self._settings.worker_concurrency
        while not self._stopping:
            free = concurrency - len(self._inflight)
            if free <= 0:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            self._wakeup.clear()
            limit = min(free, CLAIM_BATCH)
            try:
                items = await self._queue.claim(
                    now=self._clock(), lease_seconds=self._settings.lease_seconds, limit=limit
                )
            except Exception:
                log.exception("could not claim %s work; retrying", self.name)
                await asyncio.sleep(STORE_ERROR_PAUSE)
                continue
            for item in items:
                self._start(item)
            if len(items) < limit:
                # Nothing else is due: claiming again at once would only queue an empty claim
                # ahead of the new items' own store calls (one store thread), a hand-off on
                # every message's way to Cast. A wake-up during the claim is not lost.
                await self._idle()

    async def _idle(self) -> None:
        """Until woken, or `poll_interval_seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_interval_seconds)

    def _release(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._held.pop(task, None)

    def _let_go(self) -> None:
        """The current task writes its item back (the write ends the lease): no more heartbeats,
        and an extension that meets the written item is no lost lease."""
        task = asyncio.current_task()
        if task is not None:
            self._held.pop(task, None)

    async def _heartbeat(self) -> None:
        """Every third of the lease, extend the leases of all held items at once: one after the
        other, each waited behind whatever the store had queued, and with many items held the
        last ones' leases could run out before their turn."""
        while True:
            await asyncio.sleep(self._settings.lease_seconds / 3)
            held = [(task, item) for task, item in self._held.items() if not task.done()]
            await asyncio.gather(*(self._extend(task, item) for task, item in held))

    async def _extend(self, task: asyncio.Task[None], item: WorkItem) -> None:
        try:
            kept = await self._queue.extend(item, self._clock() + self._settings.lease_seconds)
        except Exception:
            log.warning("could not extend a %s lease", self.name, extra={"id": item.id})
            return
        if not kept and self._held.pop(task, None) is not None:  # not written back meanwhile
            log.warning("lost the lease of a %s item", self.name, extra={"id": item.id})

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming; give in-flight items `grace_seconds`, then cancel them (subclasses
        release a cancelled item back to its queue)."""
        self._stopping = True
        self.wake()
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class JobWorker[J: Job](LeasedQueueWorker):
    """Runs a queue of jobs: each outcome is written back to the job's document before its lease
    is released. Subclasses implement `_advance`, and for unexpected errors `_deadline` and
    `_give_up` (`retry_policy` paces the retries before the deadline)."""

    what = "job"  # for the log, e.g. "inbound SMS"
    id_field = "id"  # the log field naming the item, e.g. "inbound_id"
    retry_policy: ClassVar[RetryPolicy]  # paces retries after an unexpected error

    def __init__(
        self,
        settings: Settings,
        queue: QueueRepository[J],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, queue, clock)
        self._jobs = queue

    @abstractmethod
    async def _advance(self, job: J) -> float | None:
        """Take the job as far as it goes now: when it is due again, or None once finished."""

    @abstractmethod
    def _deadline(self, job: J, now: float) -> Deadline:
        """The retry window of the job's current stage."""

    @abstractmethod
    def _give_up(self, job: J, now: float, what: str) -> float | None:
        """An unexpected error past the deadline (`what`): finish the job's stage as failed; when
        to come back for the next stage, or None once the job is finished."""

    def _crashed(self, job: J, exc: Exception) -> float | None:
        now, what = self._clock(), f"unexpected error ({type(exc).__name__})"
        due_at = self.retry_policy.retry_at(self._deadline(job, now), now)
        if due_at is None:
            return self._give_up(job, now, what)
        job.record(now, "unexpected_error", f"{what}; retrying in {due_at - now:.1f}s")
        return due_at

    async def _process(self, item: WorkItem) -> None:
        job = self._jobs.model.model_validate(item.data)
        try:
            await self._write_back(item, job, await self._advance(job))
        except asyncio.CancelledError:
            # Shutting down: hand the job back now instead of waiting for the lease.
            self._let_go()
            await asyncio.shield(self._jobs.reschedule(item, job, self._clock()))
            raise
        except Exception as exc:
            log.exception("unexpected error on %s", self.what, extra={self.id_field: item.id})
            await self._write_back(item, job, self._crashed(job, exc))

    async def _write_back(self, item: WorkItem, job: J, due_at: float | None) -> None:
        self._let_go()
        if due_at is None:
            await self._jobs.finish(item, job, self._clock())
        else:
            await self._jobs.reschedule(item, job, due_at)
