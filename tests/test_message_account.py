"""A message keeps the Cast key (account) it was first sent with: retries (same idempotency key)
and receipt polls use it even after the location's key changed or was removed; it is kept
encrypted with the message (issue 28). The worker over a real store, both backends."""

import json

import pytest
from cryptography.fernet import Fernet

from app.cast.accounts import CastAccounts
from app.cast.client import CastError
from app.cast.pacing import CastPacer
from app.devkit.harness import CAST_KEY, CIPHER
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.metrics import Counters
from app.oauth.crypto import TokenCipher
from app.oauth.tokens import TokenService
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage, Part
from app.outbound.worker import OutboundWorker
from app.store import Store
from tests.support.doubles import unknown_senders
from tests.support.units import (
    FakeCast,
    FakeClock,
    FakeGHL,
    install,
    installations,
    outbound_worker,
    step,
    unit_settings,
)

QUEUE = "outbound"
LOCATION = "loc-1"
PHONE = "+639171234567"
OWN_KEY = "cast_" + "0ee1" * 16
OTHER_KEY = "cast_" + "07e2" * 16
CAST_503 = CastError("Cast answered 503", status=503, code="HTTP_503", retryable=True)
LATER = 61.0  # past any retry's backoff


@pytest.fixture
def cast() -> FakeCast:
    return FakeCast()


@pytest.fixture
def choices(store: Store) -> LocationSettingsRepository:
    return LocationSettingsRepository(store, CIPHER)


@pytest.fixture
async def worker(
    store: Store, choices: LocationSettingsRepository, cast: FakeCast, clock: FakeClock
) -> OutboundWorker:
    config = unit_settings(dlr_first_poll_seconds=15)
    ghl = FakeGHL()
    await install(installations(store), clock(), location_id=LOCATION)
    tokens = TokenService(config, store, installations(store), ghl, Counters(), clock=clock)
    unpaced = CastPacer(store, per_key_rate=1e6, ip_rate=1e6)
    # a key change applies at once
    accounts = CastAccounts(config, choices, unknown_senders(), ttl=0.0)
    return outbound_worker(config, store, cast, ghl, tokens, unpaced, clock, accounts=accounts)


async def use_key(choices: LocationSettingsRepository, api_key: str | None) -> None:
    """The location's settings page saved: its own key `api_key` (None: the default account)."""
    await choices.put(
        LocationSettings(location_id=LOCATION, cast_api_key=api_key, enabled=True, updated_at=1.0)
    )


async def accept(store: Store, clock: FakeClock, **fields: object) -> None:
    message = OutboundMessage(
        message_id="m1",
        location_id=LOCATION,
        phone=PHONE,
        to=PHONE,
        parts=[Part(text="hello")],
        received_at=clock(),
        **fields,
    )
    assert await OutboxRepository(store).add(message)


async def process(worker, store: Store, clock: FakeClock) -> OutboundMessage:
    return OutboundMessage.model_validate((await step(worker, store, QUEUE, clock)).data)


def sent_with(cast: FakeCast) -> list[tuple[str, str]]:
    """(key, idempotency key) of every send asked of Cast."""
    return [(args[0], args[2]) for args in cast.calls["send_sms"]]


@pytest.mark.parametrize("now_uses", [OTHER_KEY, None], ids=["key changed", "key removed"])
async def test_a_retry_goes_to_the_account_of_the_first_attempt(
    worker, store, choices, cast, clock, now_uses
):
    await use_key(choices, OWN_KEY)
    await accept(store, clock)
    cast.script("send_sms", CAST_503)  # Cast may have sent it: only its idempotency knows
    await process(worker, store, clock)
    await use_key(choices, now_uses)
    clock.advance(LATER)

    message = await process(worker, store, clock)

    assert message.stage == "poll"
    assert sent_with(cast) == [(OWN_KEY, "ghl:m1:1/1")] * 2


async def test_receipt_polls_ask_the_account_that_accepted_the_message(
    worker, store, choices, cast, clock
):
    await use_key(choices, OWN_KEY)
    await accept(store, clock)
    await process(worker, store, clock)
    await use_key(choices, None)
    clock.advance(15)

    await process(worker, store, clock)

    assert [args[0] for args in cast.calls["message_status"]] == [OWN_KEY]


async def test_the_key_is_kept_with_the_message_encrypted(worker, store, choices, clock):
    await use_key(choices, OWN_KEY)
    await accept(store, clock)
    await process(worker, store, clock)

    item = await store.get_item(QUEUE, "m1")
    assert item is not None and OWN_KEY not in json.dumps(item.data)
    assert CIPHER.decrypt(OutboundMessage.model_validate(item.data).cast_key or "") == OWN_KEY


async def test_a_message_stored_before_keys_were_kept_goes_out_with_the_current_key(
    worker, store, choices, cast, clock
):
    await use_key(choices, OTHER_KEY)
    await accept(store, clock, channel="sms")  # routed by a bridge that kept no key

    message = await process(worker, store, clock)

    assert sent_with(cast) == [(OTHER_KEY, "ghl:m1:1/1")]
    assert CIPHER.decrypt(message.cast_key or "") == OTHER_KEY  # kept from now on


async def test_a_message_whose_kept_key_cannot_be_decrypted_fails_without_another_account(
    worker, store, cast, clock
):
    lost = TokenCipher(Fernet.generate_key()).encrypt(OWN_KEY)  # TOKEN_ENCRYPTION_KEY changed
    await accept(store, clock, channel="sms", cast_key=lost)

    message = await process(worker, store, clock)

    assert (message.status, message.error_code) == ("failed", "CAST_KEY_UNREADABLE")
    assert not cast.calls["send_sms"]


async def test_receipts_kept_on_an_undecryptable_key_are_reported_unconfirmed_at_once(
    worker, store, cast, clock
):
    lost = TokenCipher(Fernet.generate_key()).encrypt(OWN_KEY)
    accepted = {"stage": "poll", "accepted_at": clock(), "channel": "sms", "cast_key": lost}
    await accept(store, clock, **accepted)

    message = await process(worker, store, clock)

    assert (message.status, message.delivery) == ("delivered", "unconfirmed")
    assert not cast.calls["message_status"]


async def test_a_default_account_message_keeps_the_default_key_after_the_location_gets_its_own(
    worker, store, choices, cast, clock
):
    await accept(store, clock)
    cast.script("send_sms", CAST_503)
    await process(worker, store, clock)
    await use_key(choices, OWN_KEY)
    clock.advance(LATER)

    await process(worker, store, clock)

    assert sent_with(cast) == [(CAST_KEY, "ghl:m1:1/1")] * 2


def requeued(*, part_accepted: bool) -> OutboundMessage:
    message = OutboundMessage(
        message_id="m1",
        location_id=LOCATION,
        phone=PHONE,
        parts=[Part(text="a", cast_message_id="c1" if part_accepted else None), Part(text="b")],
        received_at=0.0,
        channel="sms",
        cast_key=CIPHER.encrypt(OWN_KEY),
    )
    message.finish(1.0, "failed", "HTTP_503")
    message.restart(2.0)
    return message


def test_a_requeued_message_with_a_part_accepted_keeps_its_key():
    assert requeued(part_accepted=True).cast_key is not None


def test_a_requeued_message_with_no_part_accepted_takes_the_locations_current_key():
    assert requeued(part_accepted=False).cast_key is None
