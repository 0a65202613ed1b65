"""The contact's GHL conversation (issue 27): looked up or opened, its id cached per contact in
the one bounded TTL cache (app/kit/ttl_cache.py), the look-ups paced with the location's other
GHL calls."""

import time

import httpx
import pytest
import respx

from app.ghl.client import GHLClient, GHLError
from app.ghl.conversations import ConversationDirectory
from app.ghl.pacing import HEADROOM, LIMIT, WINDOW_SECONDS, GHLPacer
from app.metrics import unobserved
from app.pacing import MAX_LATENESS, spacing
from tests.support.units import FakeGHL

LOCATION, CONTACT = "loc-1", "contact-1"


# The directory --------------------------------------------------------------------------------
@pytest.fixture
def directory(ghl: FakeGHL) -> ConversationDirectory:
    return ConversationDirectory(ghl)  # type: ignore[arg-type]


async def test_the_contacts_existing_conversation_is_found(directory, ghl):
    ghl.script("search_conversations", [{"id": "other", "contactId": "k9"}, _conv("conv-7")])
    assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-7"
    assert ghl.calls["create_conversation"] == []


async def test_a_contact_without_a_conversation_gets_one_opened(directory, ghl):
    assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-1"
    assert ghl.calls["create_conversation"] == [("tok", LOCATION, CONTACT)]


async def test_a_known_conversation_costs_no_ghl_call(directory, ghl):
    ghl.script("search_conversations", [_conv("conv-7")])
    for _ in range(3):
        assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-7"
    assert len(ghl.calls["search_conversations"]) == 1


async def test_conversations_are_cached_per_location_and_contact(directory, ghl):
    ghl.script("search_conversations", [_conv("conv-a")], [_conv("conv-b")])
    assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-a"
    assert await directory.conversation_id("tok", "loc-2", CONTACT) == "conv-b"


async def test_a_forgotten_conversation_is_looked_up_again(directory, ghl):
    ghl.script("search_conversations", [_conv("conv-7")], [_conv("conv-8")])
    await directory.conversation_id("tok", LOCATION, CONTACT)
    directory.forget(LOCATION, CONTACT)
    assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-8"


async def test_a_conversation_opened_meanwhile_by_another_process_is_used(directory, ghl):
    ghl.script("search_conversations", [], [_conv("conv-race")])
    ghl.script("create_conversation", GHLError("exists", status=400))
    assert await directory.conversation_id("tok", LOCATION, CONTACT) == "conv-race"


async def test_a_refused_create_with_no_conversation_to_find_is_raised(directory, ghl):
    ghl.script("create_conversation", GHLError("refused", status=422))
    with pytest.raises(GHLError):
        await directory.conversation_id("tok", LOCATION, CONTACT)
    assert directory.cached(LOCATION, CONTACT) is None


def _conv(conversation_id: str) -> dict[str, str]:
    return {"id": conversation_id, "contactId": CONTACT, "locationId": LOCATION}


# Pacing ---------------------------------------------------------------------------------------
BASE = "https://ghl.test"


async def test_conversation_look_ups_take_the_locations_pacing_slots(store):
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(200, json={"conversations": [], "conversation": {"id": "c"}})

    with respx.mock(base_url=BASE) as mock:
        mock.route().mock(side_effect=answer)
        async with httpx.AsyncClient(base_url=BASE) as http:
            client = GHLClient(http, unobserved, GHLPacer(store))
            await ConversationDirectory(client).conversation_id("tok", LOCATION, CONTACT)
        paths = [c.request.url.path for c in mock.calls]
    assert paths == ["/conversations/search", "/conversations/"]
    assert sent[1] - sent[0] >= spacing(LIMIT - HEADROOM, WINDOW_SECONDS) - MAX_LATENESS
