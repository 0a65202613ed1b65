"""Cast channels (issue 21): each sender ID is approved for `sms` or `sim`, and a message goes out
through its sender's channel. Unit tests against the fake Cast in-process (ASGI transport)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.cast.accounts import CastAccounts, account_from
from app.cast.client import CastClient, CastError
from app.cast.keys import key_fingerprint
from app.cast.repository import SENDER_CLAIM_SECONDS, SenderLists
from app.cast.schemas import SendRequest, checked_sender_id
from app.cast.senders import CLAIM_POLL_SECONDS, SenderDirectory, sender_key
from app.config import Settings
from app.devkit.fake_cast import FakeCast
from app.kit.errors import ApiError
from app.locations.schemas import LocationSettings, SettingsForm
from app.outbound.schemas import OutboundMessage, Part
from app.store import Store
from tests.support.doubles import NothingShared, no_pacing
from tests.support.units import NoChoices, cast_client_over

KEY = "cast_" + "ab" * 32
SIM = "+639170000001"


@pytest.fixture
def cast() -> FakeCast:
    fake = FakeCast({KEY})
    fake.approve(KEY, "MYBRAND", "sms")
    fake.approve(KEY, SIM, "sim")
    return fake


@pytest.fixture
async def client(cast: FakeCast) -> AsyncIterator[CastClient]:
    async with cast_client_over(cast.app) as client:
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alone(client: CastClient, **options: Any) -> SenderDirectory:
    """The sender directory of a bridge alone on its store."""
    return SenderDirectory(client, no_pacing, NothingShared(), **({"clock": Clock()} | options))


def accounts(directory: SenderDirectory) -> CastAccounts:
    settings = Settings(
        ghl_client_id="client",
        ghl_client_secret="secret",  # type: ignore[arg-type]
        cast_api_key=KEY,  # type: ignore[arg-type]
        cast_sender_id="MYBRAND",
        _env_file=None,  # type: ignore[call-arg]
    )
    return CastAccounts(settings, NoChoices(), directory)


# The client ---------------------------------------------------------------------------------


async def test_a_sim_send_and_its_receipt_use_the_sim_gateway_endpoints(client, cast):
    request = SendRequest(to="09171234567", message="hi", sender_id=SIM)

    sent = await client.send_sms(KEY, request, idempotency_key="k1", channel="sim")
    receipt = await client.message_status(KEY, sent.message_id or "", "sim")

    assert cast.sent[0]["channel"] == "sim" and receipt.status == "delivered"
    with pytest.raises(CastError) as wrong_channel:
        await client.message_status(KEY, sent.message_id or "", "sms")
    assert wrong_channel.value.code == "NOT_FOUND"


async def test_a_sender_is_refused_on_the_other_channels_endpoint(client):
    for sender, channel in (("MYBRAND", "sim"), (SIM, "sms")):
        request = SendRequest(to="09171234567", message="hi", sender_id=sender)
        with pytest.raises(CastError) as refused:
            await client.send_sms(KEY, request, idempotency_key=sender, channel=channel)
        assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")


async def test_channel_not_allowed_reads_as_an_action_for_the_ghl_user(client, cast):
    cast.channels_of(KEY).discard("sim")
    request = SendRequest(to="09171234567", message="hi", sender_id=SIM)

    with pytest.raises(CastError) as refused:
        await client.send_sms(KEY, request, idempotency_key="k", channel="sim")

    assert (refused.value.status, refused.value.retryable) == (403, False)
    assert refused.value.reason == (
        "This Cast account cannot send through the SIM gateway; ask Cast to enable it"
    )


async def test_the_sender_list_carries_each_senders_channel(client):
    listed = await client.sender_ids(KEY)

    assert [(s.sender_id, s.known_channel) for s in listed] == [("MYBRAND", "sms"), (SIM, "sim")]


# The sender directory -----------------------------------------------------------------------


async def test_the_sender_list_is_asked_once_then_served_from_the_cache(client, cast):
    paced: list[int] = []

    async def pace() -> None:
        paced.append(1)

    directory = SenderDirectory(client, pace, NothingShared(), clock=Clock())

    assert await directory.channel_of(KEY, SIM) == "sim"
    assert await directory.channel_of(KEY, "MYBRAND") == "sms"
    assert await directory.channel_of(KEY, "0917 000 0001") == "sim"  # any PH spelling
    assert cast.account_requests == ["sender-ids"] and paced == [1]


async def test_sender_names_are_told_apart_exactly_as_cast_lists_them(client, cast):
    cast.approve(KEY, "ACME CO", "sms")
    directory = alone(client)

    assert await directory.channel_of(KEY, "ACME CO") == "sms"
    assert await directory.channel_of(KEY, "AcmeCo") is None
    assert await directory.channel_of(KEY, "acme co") is None


async def test_a_miss_asks_cast_again_but_at_most_every_miss_interval(client, cast):
    clock = Clock()
    directory = alone(client, ttl=300, miss_ttl=30, clock=clock)
    assert await directory.channel_of(KEY, "NEWBRAND") is None

    cast.approve(KEY, "NEWBRAND", "sms")
    clock.now += 10
    assert await directory.channel_of(KEY, "NEWBRAND") is None  # asked 10 s ago
    clock.now += 25
    assert await directory.channel_of(KEY, "NEWBRAND") == "sms"
    assert len(cast.account_requests) == 2


async def test_the_list_is_refreshed_after_its_lifetime(client, cast):
    clock = Clock()
    directory = alone(client, ttl=300, clock=clock)
    await directory.channel_of(KEY, SIM)

    cast.senders[KEY] = [{"sender_id": SIM, "label": "x", "channel": "sms"}]
    clock.now += 301

    assert await directory.channel_of(KEY, SIM) == "sms"


async def test_when_cast_cannot_be_asked_the_last_list_is_used(client, cast):
    clock = Clock()
    directory = alone(client, ttl=300, clock=clock)
    await directory.channel_of(KEY, SIM)
    cast.api_keys.clear()  # every request now answers 401
    clock.now += 301

    assert await directory.channel_of(KEY, SIM) == "sim"


async def test_with_no_list_ever_read_the_channel_is_not_known(client, cast):
    directory = alone(client)
    cast.api_keys.clear()

    assert await directory.channel_of(KEY, SIM) is None


# Replicas share what Cast listed --------------------------------------------------------------
def replica(client: CastClient, store: Store, clock: Clock, **options: Any) -> SenderDirectory:
    return SenderDirectory(client, no_pacing, SenderLists(store), clock=clock, **options)


async def test_a_list_one_replica_read_is_read_from_the_store_by_the_others(client, cast, store):
    clock = Clock()
    assert await replica(client, store, clock).channel_of(KEY, SIM) == "sim"

    assert await replica(client, store, clock).channel_of(KEY, "MYBRAND") == "sms"
    assert cast.account_requests == ["sender-ids"]


async def test_replicas_asking_for_a_key_at_once_ask_cast_once(client, cast, store):
    clock = Clock()
    replicas = [replica(client, store, clock) for _ in range(3)]

    channels = await asyncio.gather(*(r.channel_of(KEY, SIM) for r in replicas))

    assert channels == ["sim"] * 3 and cast.account_requests == ["sender-ids"]


async def test_a_list_in_the_store_older_than_its_lifetime_is_read_from_cast_again(
    client, cast, store
):
    clock = Clock()
    await replica(client, store, clock, ttl=300).channel_of(KEY, SIM)
    cast.senders[KEY] = [{"sender_id": SIM, "label": "x", "channel": "sms"}]
    clock.now += 301

    assert await replica(client, store, clock, ttl=300).channel_of(KEY, SIM) == "sms"
    assert len(cast.account_requests) == 2


async def test_a_replica_whose_claimant_died_asks_cast_itself_once_the_claim_expires(
    client, cast, store
):
    clock = Clock()
    await SenderLists(store).claim(key_fingerprint(KEY), "dead", clock())  # died asking
    waited: list[float] = []

    async def passing(seconds: float) -> None:
        waited.append(seconds)
        clock.now += seconds

    directory = replica(client, store, clock, sleep=passing)
    assert await directory.channel_of(KEY, SIM) == "sim"
    assert cast.account_requests == ["sender-ids"]
    assert sum(waited) == pytest.approx(SENDER_CLAIM_SECONDS, abs=CLAIM_POLL_SECONDS)


async def test_a_fresh_read_after_another_replicas_read_asks_cast_without_waiting(
    client, cast, store
):
    clock = Clock()
    waited: list[float] = []

    async def recorded(seconds: float) -> None:
        waited.append(seconds)

    for _ in range(2):  # two checks of a sender a second apart (the settings page, the CLI)
        await replica(client, store, clock, sleep=recorded).senders(KEY, max_age=0.0)
        clock.now += 1

    assert cast.account_requests == ["sender-ids"] * 2 and waited == []


async def test_when_cast_cannot_be_asked_a_list_another_replica_read_is_used(client, cast, store):
    clock = Clock()
    await replica(client, store, clock, ttl=300).channel_of(KEY, SIM)
    cast.api_keys.clear()  # every request now answers 401
    clock.now += 301

    assert await replica(client, store, clock, ttl=300).channel_of(KEY, SIM) == "sim"


# Which channel a location sends through ------------------------------------------------------


async def test_the_channel_follows_cast_unless_set_by_hand(client):
    resolved = accounts(alone(client))
    location = LocationSettings(
        location_id="l", sender_id=SIM, assigned_senders=[SIM], updated_at=1.0
    )
    by_hand = location.model_copy(update={"channel": "sms"})

    from_cast = await resolved.with_channel(account_from(location, resolved.default))
    set_by_hand = await resolved.with_channel(account_from(by_hand, resolved.default))

    assert (from_cast.channel, from_cast.channel_source) == ("sim", "cast")
    assert (set_by_hand.channel, set_by_hand.channel_source) == ("sms", "setting")


async def test_a_sender_cast_cannot_place_is_assumed_sms(client, cast):
    cast.api_keys.clear()
    resolved = accounts(alone(client))

    account = await resolved.with_channel(resolved.default)

    assert (account.channel, account.channel_source) == ("sms", "assumed")


# Saving a sender ID --------------------------------------------------------------------------


async def test_a_sender_approved_for_neither_channel_is_refused_naming_the_approved(client):
    resolved = accounts(alone(client))

    with pytest.raises(ApiError) as refused:
        await resolved.check_sender(KEY, "OTHERBRAND", None)

    assert refused.value.status == 422 and refused.value.field == "sender_id"
    assert refused.value.message == (
        f"OTHERBRAND is not approved for this Cast account; approved: MYBRAND (sms), {SIM} (sim)"
    )


async def test_a_sender_set_by_hand_to_the_wrong_channel_is_refused(client):
    resolved = accounts(alone(client))

    with pytest.raises(ApiError) as refused:
        await resolved.check_sender(KEY, "MYBRAND", "sim")

    assert "approved for the sms channel, not sim" in refused.value.message


async def test_an_approved_sender_is_saved_in_casts_spelling_with_its_channel(client):
    resolved = accounts(alone(client))

    check = await resolved.check_sender(KEY, "09170000001", None)

    assert (check.sender_id, check.channel, check.checked) == (SIM, "sim", True)


async def test_when_cast_cannot_be_asked_the_typed_sender_is_kept_and_says_so(client, cast):
    cast.api_keys.clear()
    resolved = accounts(alone(client))

    check = await resolved.check_sender(KEY, "ANYBRAND", "sms")

    assert (check.sender_id, check.channel, check.checked) == ("ANYBRAND", "sms", False)
    assert check.note and "Cast does not accept this API key" in check.note


def test_a_sim_number_is_a_valid_sender_id_and_the_form_takes_a_channel():
    assert checked_sender_id("+639170000001") == "+639170000001"
    assert SettingsForm(sender_id="09170000001", channel="sim").channel == "sim"
    assert SettingsForm(sender_id="MYBRAND", channel="").channel is None
    with pytest.raises(ValueError):
        SettingsForm(channel="viber")


# The message keeps its route ----------------------------------------------------------------


def message(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "message_id": "m",
        "location_id": "l",
        "phone": "+639171234567",
        "to": "09171234567",
        "parts": [Part(text="a"), Part(text="b")],
        "received_at": 1.0,
        "channel": "sim",
        "sender_id": SIM,
    }
    return OutboundMessage.model_validate({**values, **fields})


def test_a_requeue_with_nothing_accepted_takes_the_current_sender():
    failed = message()
    failed.finish(2.0, "failed", "CHANNEL_NOT_ALLOWED", "no sim")

    failed.restart(3.0)

    assert (failed.channel, failed.sender_id) == (None, None)


def test_a_requeue_keeps_the_route_of_an_accepted_part():
    failed = message()
    failed.parts[0].cast_message_id, failed.parts[0].channel = "CAST1", "sim"
    failed.finish(2.0, "failed", "INTERNAL_ERROR", "gave up")

    failed.restart(3.0)

    assert (failed.channel, failed.sender_id) == ("sim", SIM)


def test_a_sender_name_with_letters_is_never_read_as_a_vanity_number():
    assert sender_key("0917CAST123") == "0917CAST123"
    assert sender_key("0917 000 0001") == sender_key("+639170000001") == "+639170000001"
