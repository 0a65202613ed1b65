"""The opt-out list is checked again just before each part's slot, at the end of its wait for the
key's pacing (the pacer's last check): a STOP that arrives while a message waits for its slot
stops its remaining parts (issue 28). The worker over a real store, both backends."""

from collections.abc import Awaitable, Callable

import pytest

from app.cast.pacing import CastPacer, ComeBack, SendNow
from app.metrics import Counters
from app.oauth.tokens import TokenService
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage, Part
from app.store import Store
from tests.support.units import (
    FakeCast,
    FakeClock,
    FakeGHL,
    install,
    installations,
    optout_service,
    outbound_worker,
    step,
    unit_settings,
)

LOCATION = "loc-1"
PHONE = "+639171234567"


class StopWhileWaiting(CastPacer):
    """A pacer during whose wait for the `at_part`-th slot the recipient replies STOP."""

    def __init__(self, store: Store, optouts: OptOutService, at_part: int) -> None:
        super().__init__(store, per_key_rate=1e6, ip_rate=1e6)
        self._optouts, self._at_part, self._waits = optouts, at_part, 0

    async def before_send[T](
        self, api_key: str, check: Callable[[], Awaitable[T]], *, returning: bool = False
    ) -> SendNow[T] | ComeBack:
        self._waits += 1
        if self._waits == self._at_part:
            await self._optouts.opt_out(LOCATION, PHONE, source="keyword", at=1.0, keyword="STOP")
        return await super().before_send(api_key, check, returning=returning)


@pytest.fixture
def cast() -> FakeCast:
    return FakeCast()


async def send_three_parts(store: Store, cast: FakeCast, clock: FakeClock, stop_at: int):
    """A three-part message, with a STOP while part `stop_at` waits: the message as stored."""
    config = unit_settings()
    ghl = FakeGHL()
    await install(installations(store), clock(), location_id=LOCATION)
    optouts = optout_service(config, store)
    worker = outbound_worker(
        config,
        store,
        cast,
        ghl,
        TokenService(config, store, installations(store), ghl, Counters(), clock=clock),
        StopWhileWaiting(store, optouts, stop_at),
        clock,
        optouts=optouts,
    )
    message = OutboundMessage(
        message_id="m1",
        location_id=LOCATION,
        phone=PHONE,
        to=PHONE,
        parts=[Part(text=text) for text in ("one", "two", "three")],
        received_at=clock(),
    )
    assert await OutboxRepository(store).add(message)
    return OutboundMessage.model_validate((await step(worker, store, "outbound", clock)).data)


async def test_a_stop_while_a_part_waits_for_its_slot_stops_the_remaining_parts(
    store: Store, cast: FakeCast, clock: FakeClock
):
    message = await send_three_parts(store, cast, clock, stop_at=2)

    assert (message.status, message.error_code) == ("failed", "OPTED_OUT")
    assert message.error_message is not None
    assert message.error_message.endswith("(1 of 3 parts sent)")
    assert [args[1].message for args in cast.calls["send_sms"]] == ["one"]


async def test_a_stop_while_the_first_part_waits_sends_nothing(
    store: Store, cast: FakeCast, clock: FakeClock
):
    message = await send_three_parts(store, cast, clock, stop_at=1)

    assert (message.status, message.error_code) == ("failed", "OPTED_OUT")
    assert "parts sent" not in (message.error_message or "")
    assert not cast.calls["send_sms"]
