"""Opt-out rules without HTTP servers: keywords, recognising Cast's refusal, the settings, the
sync's memory across restarts and the DND update's care for the contact's other settings."""

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest

from app.cast.accounts import AccountChoices, CastAccounts
from app.cast.client import CastClient, CastError
from app.cast.keys import legacy_fingerprint
from app.cast.pacing import CastPacer
from app.cast.schemas import Unsubscribed
from app.config import Settings, SettingsError, load_settings
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import CAST_KEY, CIPHER, installation_from_pair
from app.ghl.client import GHLClient
from app.ghl.conversations import ConversationDirectory
from app.ghl.pacing import Unpaced
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, routing_window
from app.inbound.schemas import InboundPayload, InboundSMS
from app.inbound.worker import InboundWorker
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.metrics import Counters, unobserved
from app.oauth.repository import InstallationRepository
from app.oauth.tokens import TokenService
from app.optouts.keywords import Keyword, match_keyword
from app.optouts.repository import DND_QUEUE, SYNC_SEEN, DndQueue, OptOutList, SyncLedger
from app.optouts.schemas import DndTask, OptOut
from app.optouts.service import OptOutService
from app.optouts.sync import CastOptOutSync, sender_matches
from app.optouts.worker import DND_DEADLINE_SECONDS, DndWorker
from app.store import DONE, PENDING, Store
from tests.support.doubles import no_owners, unknown_senders
from tests.support.units import FakeClock, NoChoices, step

OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "HINTO")
IN = ("START", "UNSTOP")
PHONE = "+639171234567"
REQUIRED = {"ghl_client_id": "id", "ghl_client_secret": "s", "cast_api_key": CAST_KEY}
OWN_KEY = "cast_" + "0ee1" * 16


def _own_key(location_id: str, api_key: str | None) -> LocationSettings:
    """A location's settings: its own key `api_key` (None: the default account)."""
    return LocationSettings(
        location_id=location_id, cast_api_key=api_key, enabled=True, updated_at=1.0
    )


# Keywords -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["STOP", "stop", " Stop. ", "STOP!!", "hinto", "Quit?\n"])
def test_the_whole_text_being_an_opt_out_word_is_an_opt_out(text: str) -> None:
    keyword = match_keyword(text, OUT, IN)
    assert keyword is not None and keyword.opt_out


@pytest.mark.parametrize("text", ["stop texting me", "STOP 2", "don't stop", "S T O P", "..."])
def test_a_keyword_inside_other_words_is_not_an_opt_out(text: str) -> None:
    assert match_keyword(text, OUT, IN) is None


def test_start_is_an_opt_in() -> None:
    assert match_keyword("Start!", OUT, IN) == Keyword("START", opt_out=False)


def test_keywords_are_configurable_and_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPT_OUT_KEYWORDS", " alto , Stop ")
    monkeypatch.setenv("OPT_IN_KEYWORDS", "")
    settings = load_settings(**REQUIRED, _env_file=None)
    assert (settings.opt_out_keywords, settings.opt_in_keywords) == (("ALTO", "STOP"), ())


def test_a_word_cannot_opt_out_and_in() -> None:
    with pytest.raises(SettingsError, match="OPT_IN_KEYWORDS: STOP is also in OPT_OUT_KEYWORDS"):
        load_settings(**REQUIRED, opt_in_keywords="start,stop", _env_file=None)


# Cast's refusal -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (400, "VALIDATION_ERROR", "Recipient has unsubscribed"),
        (403, "RECIPIENT_OPTED_OUT", "Forbidden"),
        (422, "ALREADY_UNSUBSCRIBED", "already unsubscribed"),
    ],
)
def test_a_refusal_naming_an_unsubscribe_is_the_recipients_opt_out(status, code, words) -> None:
    error = CastError(
        f"Cast refused the SMS ({status} {code}): {words}",
        status=status,
        code=code,
        retryable=False,
    )
    assert error.recipient_unsubscribed


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(400, "VALIDATION_ERROR", False), (402, "INSUFFICIENT_CREDITS", False), (503, "X", True)],
)
def test_other_refusals_are_not_opt_outs(status, code, retryable) -> None:
    error = CastError(
        f"Cast refused the SMS ({status} {code}): bad",
        status=status,
        code=code,
        retryable=retryable,
    )
    assert not error.recipient_unsubscribed


# The Cast sync --------------------------------------------------------------------------------
def _settings(**extra: object) -> Settings:
    return load_settings(**REQUIRED, cast_sender_id="CASTTEST", _env_file=None, **extra)


async def _sync(
    store: Store, cast: FakeCast, http: httpx.AsyncClient, choices: AccountChoices | None = None
) -> CastOptOutSync:
    """The sync over `store`; the locations' account choices are `choices`, else none made."""
    settings = _settings()
    counters = Counters()
    service = OptOutService(settings, OptOutList(store), DndQueue(store), counters)
    return CastOptOutSync(
        settings,
        SyncLedger(store),
        InstallationRepository(store, CIPHER),
        CastAccounts(settings, choices or NoChoices(), unknown_senders(), ttl=0.0),
        CastClient(http, unobserved),
        CastPacer(store, 10, 30),
        service,
        counters,
    )


async def test_a_restarted_sync_does_not_handle_an_entry_again(store: Store) -> None:
    ghl, cast = FakeGHL(), FakeCast({CAST_KEY})
    await InstallationRepository(store, CIPHER).put(
        installation_from_pair(ghl.issue_pair("l1"), "l1")
    )
    cast.unsubscribe(CAST_KEY, PHONE, "CASTTEST")
    transport = httpx.ASGITransport(app=cast.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cast") as http:
        assert await (await _sync(store, cast, http)).sync_once() == 1
        assert await OptOutList(store).remove("l1", PHONE) is not None  # lifted meanwhile
        assert await (await _sync(store, cast, http)).sync_once() == 0  # a new process
    assert await OptOutList(store).get("l1", PHONE) is None
    assert (await DndQueue(store).counts())["pending"] == 1


async def _install(store: Store, ghl: FakeGHL, *location_ids: str) -> None:
    for location_id in location_ids:
        pair = ghl.issue_pair(location_id)
        await InstallationRepository(store, CIPHER).put(installation_from_pair(pair, location_id))


@contextlib.asynccontextmanager
async def _cast_http(cast: FakeCast) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cast") as http:
        yield http


async def test_a_location_installed_later_gets_the_keys_earlier_entries(store: Store) -> None:
    ghl, cast = FakeGHL(), FakeCast({CAST_KEY})
    cast.unsubscribe(CAST_KEY, PHONE, "CASTTEST")
    await _install(store, ghl, "l1")
    async with _cast_http(cast) as http:
        assert await (await _sync(store, cast, http)).sync_once() == 1
        assert await OptOutList(store).remove("l1", PHONE) is not None  # a START since
        await _install(store, ghl, "l2")
        assert await (await _sync(store, cast, http)).sync_once() == 1

    assert await OptOutList(store).get("l2", PHONE) is not None
    assert await OptOutList(store).get("l1", PHONE) is None  # not put on again


async def test_a_location_that_moves_to_the_key_later_gets_its_earlier_entries(
    store: Store,
) -> None:
    ghl, cast = FakeGHL(), FakeCast({CAST_KEY, OWN_KEY})
    cast.unsubscribe(CAST_KEY, PHONE, "CASTTEST")
    await _install(store, ghl, "l1", "l2")
    choices = LocationSettingsRepository(store, CIPHER)
    await choices.put(_own_key("l2", OWN_KEY))
    async with _cast_http(cast) as http:
        await (await _sync(store, cast, http, choices)).sync_once()
        assert await OptOutList(store).get("l2", PHONE) is None  # another account's entry
        await choices.put(_own_key("l2", None))  # l2 removes its key: the default account now
        assert await (await _sync(store, cast, http, choices)).sync_once() == 1

    assert await OptOutList(store).get("l2", PHONE) is not None
    assert (await DndQueue(store).counts())["pending"] == 2  # l1's and l2's contact


async def test_entries_handled_before_locations_were_kept_are_not_put_on_again(
    store: Store,
) -> None:
    ghl, cast = FakeGHL(), FakeCast({CAST_KEY})
    cast.unsubscribe(CAST_KEY, PHONE, "CASTTEST", at="2026-12-01T08:00:00Z")
    legacy = f"{legacy_fingerprint(CAST_KEY)}|{PHONE}|CASTTEST|2026-12-01T08:00:00Z"
    await store.put_doc(SYNC_SEEN, legacy, {"at": 1.0})  # a sync before issue 28 handled it
    await _install(store, ghl, "l1")
    async with _cast_http(cast) as http:
        assert await (await _sync(store, cast, http)).sync_once() == 0
        await _install(store, ghl, "l2")  # joins after the upgrade
        assert await (await _sync(store, cast, http)).sync_once() == 1

    assert await OptOutList(store).get("l1", PHONE) is None
    assert await OptOutList(store).get("l2", PHONE) is not None
    assert await store.get_doc(SYNC_SEEN, legacy) is None  # kept under the key's identity now


# The DND update -----------------------------------------------------------------------------
async def _dnd_worker(
    store: Store, ghl: FakeGHL, http: httpx.AsyncClient, clock: Callable[[], float] = time.time
) -> DndWorker:
    settings = _settings()
    client = GHLClient(http, unobserved, Unpaced())
    installations = InstallationRepository(store, CIPHER)
    await installations.put(installation_from_pair(ghl.issue_pair("l1"), "l1"))
    tokens = TokenService(settings, store, installations, client, Counters())
    queue, optouts = DndQueue(store), OptOutList(store)
    return DndWorker(settings, queue, client, tokens, Counters(), optouts, clock)


async def _run_one(
    store: Store, worker: DndWorker, opt_out: bool, contact_id: str, *, listed: bool | None = None
) -> None:
    """Queue and run one DND task; the number is listed as the task wants unless `listed`."""
    service = OptOutService(_settings(), OptOutList(store), DndQueue(store), Counters())
    if opt_out if listed is None else listed:
        await service.opt_out("l1", PHONE, source="keyword", at=1.8e9, keyword="STOP")
    await service.request_dnd(
        "t1",
        "l1",
        PHONE,
        opt_out=opt_out,
        note="Replied STOP",
        source="keyword",
        contact_id=contact_id,
    )
    (item,) = await DndQueue(store).claim(now=9e9, lease_seconds=10, limit=1)
    await worker._process(item)


async def test_an_unexpected_error_past_the_dnd_deadline_fails_the_task(
    store: Store, clock: FakeClock
) -> None:
    ghl = FakeGHL()
    contact = ghl.add_contact("l1", PHONE, dndSettings=["not", "a", "mapping"])  # a bug's food
    service = OptOutService(
        _settings(), OptOutList(store), DndQueue(store), Counters(), clock=clock
    )
    await service.opt_out("l1", PHONE, source="keyword", at=clock(), keyword="STOP")
    await service.request_dnd(
        "t1",
        "l1",
        PHONE,
        opt_out=True,
        note="Replied STOP",
        source="keyword",
        contact_id=contact["id"],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ghl.app), base_url="http://g"
    ) as http:
        worker = await _dnd_worker(store, ghl, http, clock)
        retried = await step(worker, store, DND_QUEUE, clock)
        clock.advance(DND_DEADLINE_SECONDS)
        given_up = await step(worker, store, DND_QUEUE, clock)

    assert (retried.state, DndTask.model_validate(retried.data).outcome) == (PENDING, "pending")
    task = DndTask.model_validate(given_up.data)
    assert (given_up.state, task.outcome) == (DONE, "failed")
    assert task.error == "Gave up after 3600s: unexpected error (ValueError)"


async def test_setting_sms_dnd_keeps_the_contacts_other_channels(store: Store) -> None:
    ghl = FakeGHL()
    email = {"status": "active", "message": "bounced"}
    contact = ghl.add_contact("l1", PHONE, dndSettings={"Email": email})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ghl.app), base_url="http://g"
    ) as http:
        await _run_one(store, await _dnd_worker(store, ghl, http), True, contact["id"])
    assert contact["dndSettings"] == {
        "Email": email,
        "SMS": {"status": "active", "message": "Replied STOP"},
    }


async def test_an_opt_in_never_clears_a_permanent_dnd(store: Store) -> None:
    ghl = FakeGHL()
    contact = ghl.add_contact("l1", PHONE, dndSettings={"SMS": {"status": "permanent"}})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ghl.app), base_url="http://g"
    ) as http:
        await _run_one(store, await _dnd_worker(store, ghl, http), False, contact["id"])
    assert ghl.contact_updates == [] and ghl.sms_dnd("l1", PHONE) == "permanent"


async def test_an_opt_out_the_list_no_longer_shows_is_not_sent_to_ghl(store: Store) -> None:
    ghl = FakeGHL()
    contact = ghl.add_contact("l1", PHONE)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ghl.app), base_url="http://g"
    ) as http:  # STOP, then START before GHL was reached: the STOP's task runs last
        await _run_one(
            store, await _dnd_worker(store, ghl, http), True, contact["id"], listed=False
        )
    assert ghl.contact_updates == [] and ghl.sms_dnd("l1", PHONE) is None
    task = await DndQueue(store).get("t1")
    assert task is not None and task.outcome == "superseded"


# STOP as stages of the inbound message ----------------------------------------------------------
async def test_a_stop_interrupted_after_ghl_resumes_without_adding_it_twice(store: Store) -> None:
    ghl = FakeGHL()
    settings = _settings()
    inbox = InboxRepository(store)
    stop = InboundSMS.from_payload(
        InboundPayload.model_validate({"from": "09171234567", "message": "Stop", "id": "g1"}),
        time.time(),  # the worker's clock: within INBOUND_DEADLINE_SECONDS
    )
    stop.assign(stop.accepted_at, "l1", "manual")
    assert await inbox.add(stop)
    crashes = [RuntimeError("the process died here")]

    def wake_dnd() -> None:  # runs right after the DND task is stored
        if crashes:
            raise crashes.pop()

    service = OptOutService(settings, OptOutList(store), DndQueue(store), Counters(), wake_dnd)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ghl.app), base_url="http://g"
    ) as http:
        dnd = await _dnd_worker(store, ghl, http)  # installs l1
        client = GHLClient(http, unobserved, Unpaced())
        tokens = TokenService(
            settings, store, InstallationRepository(store, CIPHER), client, Counters()
        )
        recipients = RecipientDirectory(store, routing_window(settings))
        router = InboundRouter(settings, recipients, no_owners)
        worker = InboundWorker(
            settings,
            inbox,
            router,
            client,
            tokens,
            Counters(),
            optouts=service,
            conversations=ConversationDirectory(client),
        )
        for _ in range(2):  # the interrupted attempt, then the one that resumes it
            (item,) = await inbox.claim(now=9e9, lease_seconds=10, limit=1)
            await worker._process(item)
        (task,) = await DndQueue(store).claim(now=9e9, lease_seconds=10, limit=5)
        await dnd._process(task)

    done = await inbox.get("gw:g1")
    assert done is not None and done.status == "delivered"
    assert len(ghl.inbound) == 1 and len(ghl.contact_updates) == 1
    assert ghl.sms_dnd("l1", PHONE) == "active"
    assert await OptOutList(store).get("l1", PHONE) is not None


@pytest.mark.parametrize(
    ("listed", "ours", "match"),
    [
        ("CASTTEST", "CASTTEST", True),
        ("castTest", "CASTTEST", False),  # names exactly as Cast lists them: another sender
        ("639170000001", "+639170000001", True),
        ("OTHER", "CASTTEST", False),
        ("OTHER", None, True),  # a location without a sender ID sends with the account's default
    ],
)
def test_a_cast_entry_matches_the_locations_sender_id_in_any_spelling(listed, ours, match):
    entry = Unsubscribed(phone=PHONE, sender_id=listed, unsubscribed_at=None)
    assert sender_matches(entry, ours) is match


def test_the_refusal_reason_names_the_philippine_date() -> None:
    at = datetime(2026, 12, 1, 17, 30, tzinfo=UTC).timestamp()  # 01:30 on the 2nd in Manila
    optout = OptOut(
        location_id="l1", phone=PHONE, source="keyword", at=at, recorded_at=at, keyword="STOP"
    )
    assert optout.reason == "The recipient opted out (replied STOP on 2 Dec 2026)"
