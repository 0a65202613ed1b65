"""The store contract, run against both backends (SQLite file and MongoDB wire server), and its
one error contract: a failing database makes every operation raise StoreUnavailable."""

import asyncio
import inspect
import itertools
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.store import DONE, PENDING, ItemQuery, Store, StoreUnavailable
from app.store.mongo import MongoStore
from app.store.sqlite import SQLiteStore
from tests.support.broken_store import corrupt_sqlite_schema, unreachable_mongo_uri
from tests.support.units import at_time

NOW = 1_000_000.0


async def test_enqueue_inserts_an_id_only_once(store: Store) -> None:
    assert await store.enqueue("outbound", "m1", {"n": 1}, NOW)
    assert not await store.enqueue("outbound", "m1", {"n": 2}, NOW)
    item = await store.get_item("outbound", "m1")
    assert item is not None and item.data == {"n": 1} and item.state == PENDING


async def test_concurrent_enqueues_of_one_id_let_exactly_one_in(store: Store) -> None:
    results = await asyncio.gather(*(store.enqueue("outbound", "same", {}, NOW) for _ in range(20)))
    assert results.count(True) == 1


async def test_a_burst_of_enqueues_reports_each_id_new_exactly_once(store: Store) -> None:
    await store.enqueue("outbound", "old", {"n": 0}, NOW)
    ids = ["old", *(f"m{i % 30}" for i in range(60))]
    results = await asyncio.gather(*(store.enqueue("outbound", i, {"id": i}, NOW) for i in ids))
    new = sorted(i for i, inserted in zip(ids, results, strict=True) if inserted)
    assert new == sorted(f"m{i}" for i in range(30))
    assert (await store.count_items("outbound"))[PENDING] == 31


async def test_claim_returns_due_items_oldest_first_and_skips_future_ones(store: Store) -> None:
    await store.enqueue("outbound", "later", {}, NOW + 60)
    await store.enqueue("outbound", "second", {}, NOW - 1)
    await store.enqueue("outbound", "first", {}, NOW - 2)
    claimed = await store.claim("outbound", now=NOW, lease_seconds=30, limit=10)
    assert [item.id for item in claimed] == ["first", "second"]
    assert all(item.lease and item.attempts == 1 for item in claimed)


async def test_a_leased_item_is_not_claimed_again_until_its_lease_expires(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    assert len(await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)) == 1
    assert await store.claim("outbound", now=NOW + 29, lease_seconds=30, limit=1) == []
    again = await store.claim("outbound", now=NOW + 31, lease_seconds=30, limit=1)
    assert [item.attempts for item in again] == [2]


async def test_concurrent_claims_never_hand_one_item_to_two_workers(store: Store) -> None:
    for i in range(30):
        await store.enqueue("outbound", f"m{i}", {}, NOW)
    batches = await asyncio.gather(
        *(store.claim("outbound", now=NOW, lease_seconds=30, limit=3) for _ in range(15))
    )
    ids = [item.id for batch in batches for item in batch]
    assert sorted(ids) == sorted(f"m{i}" for i in range(30))


async def test_save_with_the_current_lease_reschedules_and_releases(store: Store) -> None:
    await store.enqueue("outbound", "m1", {"step": 0}, NOW)
    (item,) = await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)
    assert item.lease is not None
    assert await store.save(
        "outbound", "m1", item.lease, data={"step": 1}, state=PENDING, due_at=NOW + 5
    )
    assert await store.claim("outbound", now=NOW + 4, lease_seconds=30, limit=1) == []
    (again,) = await store.claim("outbound", now=NOW + 5, lease_seconds=30, limit=1)
    assert again.data == {"step": 1}


async def test_a_stale_lease_cannot_overwrite_the_new_holder(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    (old,) = await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)
    (new,) = await store.claim("outbound", now=NOW + 31, lease_seconds=30, limit=1)
    assert old.lease and new.lease and old.lease != new.lease
    assert not await store.save("outbound", "m1", old.lease, data={}, state=DONE, due_at=NOW)
    assert await store.save("outbound", "m1", new.lease, data={"ok": 1}, state=DONE, due_at=NOW)


async def test_finished_items_are_never_claimed_and_are_counted(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    await store.enqueue("outbound", "m2", {}, NOW)
    (item,) = await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)
    assert item.lease
    await store.save("outbound", item.id, item.lease, data={}, state=DONE, due_at=NOW)
    assert await store.count_items("outbound") == {PENDING: 1, DONE: 1}
    claimed = await store.claim("outbound", now=NOW + 3600, lease_seconds=30, limit=10)
    assert [c.id for c in claimed] == [next(i for i in ("m1", "m2") if i != item.id)]


async def test_requeue_makes_a_finished_item_due_again(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    (item,) = await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)
    assert item.lease
    await store.save("outbound", "m1", item.lease, data={}, state=DONE, due_at=NOW)
    assert await store.requeue("outbound", "m1", {"again": True}, NOW + 1)
    (again,) = await store.claim("outbound", now=NOW + 1, lease_seconds=30, limit=1)
    assert again.data == {"again": True}


async def test_oldest_due_reports_the_oldest_pending_item(store: Store) -> None:
    assert await store.oldest_due("outbound") is None
    await store.enqueue("outbound", "a", {}, NOW + 10)
    await store.enqueue("outbound", "b", {}, NOW + 5)
    assert await store.oldest_due("outbound") == NOW + 5


async def test_queues_are_separate(store: Store) -> None:
    await store.enqueue("outbound", "x", {}, NOW)
    assert await store.enqueue("inbound", "x", {}, NOW)
    assert [i.id for i in await store.claim("inbound", now=NOW, lease_seconds=5, limit=5)] == ["x"]


async def test_swap_doc_is_a_compare_and_swap_on_the_revision(store: Store) -> None:
    assert await store.swap_doc("installations", "loc1", 0, {"token": "a"})
    assert not await store.swap_doc("installations", "loc1", 0, {"token": "b"})
    doc = await store.get_doc("installations", "loc1")
    assert doc is not None and doc.rev == 1
    assert await store.swap_doc("installations", "loc1", 1, {"token": "c"})
    assert not await store.swap_doc("installations", "loc1", 1, {"token": "d"})
    final = await store.get_doc("installations", "loc1")
    assert final is not None and final.rev == 2 and final.data == {"token": "c"}


async def test_concurrent_swaps_from_one_revision_let_exactly_one_win(store: Store) -> None:
    await store.put_doc("installations", "loc1", {"token": "start"})
    results = await asyncio.gather(
        *(store.swap_doc("installations", "loc1", 1, {"token": f"t{i}"}) for i in range(10))
    )
    assert results.count(True) == 1


async def test_put_list_and_delete_documents(store: Store) -> None:
    first = await store.put_doc("settings", "b", {"sender": "B"})
    second = await store.put_doc("settings", "b", {"sender": "B2"})
    await store.put_doc("settings", "a", {"sender": "A"})
    assert (first.rev, second.rev) == (1, 2)
    assert [d.id for d in await store.list_docs("settings")] == ["a", "b"]
    assert await store.delete_doc("settings", "a")
    assert not await store.delete_doc("settings", "a")
    assert await store.get_doc("settings", "a") is None


async def test_mark_seen_is_true_only_the_first_time(store: Store) -> None:
    assert await store.mark_seen("app-webhook", "w1", NOW)
    assert not await store.mark_seen("app-webhook", "w1", NOW + 1)
    assert await store.mark_seen("other", "w1", NOW)


async def test_a_lease_is_held_by_one_owner_until_it_expires(store: Store) -> None:
    assert await store.acquire_lease("refresh:loc1", "a", now=NOW, seconds=10)
    assert not await store.acquire_lease("refresh:loc1", "b", now=NOW + 5, seconds=10)
    assert await store.acquire_lease("refresh:loc1", "a", now=NOW + 5, seconds=10)
    assert await store.acquire_lease("refresh:loc1", "b", now=NOW + 16, seconds=10)


async def test_a_released_lease_can_be_taken_at_once(store: Store) -> None:
    assert await store.acquire_lease("l", "a", now=NOW, seconds=60)
    await store.release_lease("l", "b")
    assert not await store.acquire_lease("l", "b", now=NOW, seconds=60)
    await store.release_lease("l", "a")
    assert await store.acquire_lease("l", "b", now=NOW, seconds=60)


async def test_concurrent_lease_attempts_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.acquire_lease("l", f"o{i}", now=NOW, seconds=60) for i in range(10))
    )
    assert results.count(True) == 1


async def test_ping_answers_while_open(store: Store) -> None:
    await store.ping()


async def test_extend_lease_keeps_an_item_from_being_reclaimed(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    (item,) = await store.claim("outbound", now=NOW, lease_seconds=10, limit=1)
    assert item.lease and await store.extend_lease("outbound", "m1", item.lease, NOW + 40)
    assert await store.claim("outbound", now=NOW + 30, lease_seconds=10, limit=1) == []
    assert len(await store.claim("outbound", now=NOW + 41, lease_seconds=10, limit=1)) == 1


async def test_extend_lease_fails_once_the_lease_was_lost(store: Store) -> None:
    await store.enqueue("outbound", "m1", {}, NOW)
    (old,) = await store.claim("outbound", now=NOW, lease_seconds=10, limit=1)
    await store.claim("outbound", now=NOW + 11, lease_seconds=10, limit=1)
    assert old.lease and not await store.extend_lease("outbound", "m1", old.lease, NOW + 60)


async def test_reserved_slots_are_spaced_by_the_interval(store: Store) -> None:
    slots = [await store.reserve_slot("cast:k", now=NOW, interval=0.1) for _ in range(5)]
    assert slots == at_time([NOW, NOW + 0.1, NOW + 0.2, NOW + 0.3, NOW + 0.4])


async def test_an_idle_pacer_hands_out_now(store: Store) -> None:
    await store.reserve_slot("cast:k", now=NOW, interval=0.1)
    assert await store.reserve_slot("cast:k", now=NOW + 5, interval=0.1) == NOW + 5


async def test_concurrent_reservations_never_share_a_slot(store: Store) -> None:
    slots = await asyncio.gather(
        *(store.reserve_slot("cast:k", now=NOW, interval=0.1) for _ in range(20))
    )
    ordered = sorted(slots)
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(ordered))


async def test_a_last_slot_moves_later_and_the_next_is_spaced_from_it(store: Store) -> None:
    reserved = await store.reserve_slot("cast:k", now=NOW, interval=0.1)
    assert await store.move_slot("cast:k", reserved=reserved, to=NOW + 0.03)
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.1) == at_time(NOW + 0.13)


async def test_a_slot_no_longer_the_last_does_not_move(store: Store) -> None:
    reserved = await store.reserve_slot("cast:k", now=NOW, interval=0.1)
    await store.reserve_slot("cast:k", now=NOW, interval=0.1)
    assert not await store.move_slot("cast:k", reserved=reserved, to=NOW + 0.03)
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.1) == at_time(NOW + 0.2)


async def test_recent_slots_name_the_pacers_of_a_prefix_that_reserved_since_a_time(
    store: Store,
) -> None:
    await store.reserve_slot("cast-key:a", now=NOW, interval=0.1)
    await store.reserve_slot("cast-key:b", now=NOW - 10, interval=0.1)
    await store.reserve_slot("cast-ip:g", now=NOW, interval=0.1)
    assert await store.recent_slots("cast-key:", since=NOW - 5) == {"cast-key:a": NOW}


async def test_a_slot_within_the_horizon_is_reserved(store: Store) -> None:
    await store.reserve_slot("cast:k", now=NOW, interval=0.5)
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.5, horizon=0.5) == NOW + 0.5
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.5) == NOW + 1.0


async def test_a_slot_beyond_the_horizon_is_named_but_not_reserved(store: Store) -> None:
    await store.reserve_slot("cast:k", now=NOW, interval=0.5)
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.5, horizon=0.4) == NOW + 0.5
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.5) == NOW + 0.5  # still free


async def test_concurrent_reservations_never_reserve_beyond_the_horizon(store: Store) -> None:
    slots = await asyncio.gather(
        *(store.reserve_slot("cast:k", now=NOW, interval=0.1, horizon=0.45) for _ in range(12))
    )
    within = sorted(slot for slot in slots if slot <= NOW + 0.45)
    assert within == at_time([NOW, NOW + 0.1, NOW + 0.2, NOW + 0.3, NOW + 0.4])
    assert await store.reserve_slot("cast:k", now=NOW, interval=0.1) == at_time(NOW + 0.5)


async def test_a_quota_allows_limit_uses_per_window_then_refuses(store: Store) -> None:
    taken = [await store.take_quota("q", now=NOW + i, window=600, limit=5) for i in range(7)]
    assert taken == [True] * 5 + [False] * 2
    assert await store.take_quota("other", now=NOW, window=600, limit=5)


async def test_a_quota_use_is_forgotten_once_past_the_window(store: Store) -> None:
    for i in range(5):
        assert await store.take_quota("q", now=NOW + i, window=600, limit=5)
    assert not await store.take_quota("q", now=NOW + 599, window=600, limit=5)
    assert await store.take_quota("q", now=NOW + 600, window=600, limit=5)  # NOW's use expired
    assert not await store.take_quota("q", now=NOW + 600.5, window=600, limit=5)


async def test_concurrent_quota_takers_never_exceed_the_limit(store: Store) -> None:
    taken = await asyncio.gather(
        *(store.take_quota("q", now=NOW, window=600, limit=5) for _ in range(12))
    )
    assert taken.count(True) == 5


async def test_list_items_filters_on_a_data_field_newest_first(store: Store) -> None:
    for i, location in enumerate(["a", "b", "a", "a", "b"]):
        await store.enqueue("outbound", f"m{i}", {"location_id": location, "n": i}, NOW + i)
    (item,) = await store.claim("outbound", now=NOW, lease_seconds=30, limit=1)
    assert item.lease
    await store.save("outbound", "m0", item.lease, data=item.data, state=DONE, due_at=NOW)

    found = await store.list_items("outbound", key="location_id", value="a", since=NOW, limit=10)

    assert [i.id for i in found] == ["m3", "m2", "m0"]
    assert [i.state for i in found] == [PENDING, PENDING, DONE]
    assert found[0].data == {"location_id": "a", "n": 3}


async def test_list_items_honours_since_limit_and_queue(store: Store) -> None:
    for i in range(5):
        await store.enqueue("outbound", f"m{i}", {"location_id": "a"}, NOW + i)
    await store.enqueue("inbound", "x", {"location_id": "a"}, NOW + 9)

    recent = await store.list_items(
        "outbound", key="location_id", value="a", since=NOW + 2, limit=2
    )
    assert [i.id for i in recent] == ["m4", "m3"]
    assert await store.list_items("outbound", key="location_id", value="z", since=0, limit=9) == []


async def test_list_items_refuses_a_key_that_is_not_a_field_name(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.list_items("outbound", key="a') OR 1=1 --", value="x", since=0, limit=1)


async def _ids(store: Store, query: ItemQuery, queue: str = "outbound") -> list[str]:
    return [item.id for item in await store.find_items(queue, query)]


async def test_find_items_lists_every_item_of_the_queue_newest_first(store: Store) -> None:
    for i in range(3):
        await store.enqueue("outbound", f"m{i}", {}, NOW + i)
    await store.enqueue("inbound", "x", {}, NOW + 9)

    assert await _ids(store, ItemQuery()) == ["m2", "m1", "m0"]


async def test_find_items_orders_items_of_one_instant_by_id_descending(store: Store) -> None:
    for item_id in ("b", "c", "a"):
        await store.enqueue("outbound", item_id, {}, NOW)

    assert await _ids(store, ItemQuery()) == ["c", "b", "a"]


async def test_find_items_matches_every_equality_and_none_as_null_or_absent(
    store: Store,
) -> None:
    await store.enqueue("outbound", "sent", {"location_id": "a", "status": "failed"}, NOW)
    await store.enqueue("outbound", "null", {"location_id": "a", "status": None}, NOW + 1)
    await store.enqueue("outbound", "absent", {"location_id": "a"}, NOW + 2)
    await store.enqueue("outbound", "other", {"location_id": "b", "status": None}, NOW + 3)

    failed = ItemQuery(equal=(("location_id", "a"), ("status", "failed")))
    unset = ItemQuery(equal=(("location_id", "a"), ("status", None)))
    assert await _ids(store, failed) == ["sent"]
    assert await _ids(store, unset) == ["absent", "null"]


async def test_find_items_selects_created_at_from_since_up_to_before_until(store: Store) -> None:
    for i in range(5):
        await store.enqueue("outbound", f"m{i}", {}, NOW + i)

    assert await _ids(store, ItemQuery(since=NOW + 1, until=NOW + 3)) == ["m2", "m1"]


async def test_find_items_pages_strictly_after_the_cursor_without_gaps(store: Store) -> None:
    for i, at in enumerate([NOW, NOW, NOW, NOW + 1, NOW + 2]):
        await store.enqueue("outbound", f"m{i}", {}, at)
    pages: list[list[str]] = []
    before = None
    while True:
        found = await store.find_items("outbound", ItemQuery(before=before, limit=2))
        if not found:
            break
        pages.append([item.id for item in found])
        before = (found[-1].created_at, found[-1].id)

    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]


async def test_find_items_text_matches_a_substring_ignoring_case(store: Store) -> None:
    await store.enqueue("inbound", "hit", {"text": "Your ORDER is ready"}, NOW)
    await store.enqueue("inbound", "miss", {"text": "see you"}, NOW + 1)
    await store.enqueue("inbound", "none", {"text": None}, NOW + 2)

    query = ItemQuery(text="order", text_fields=("text",))
    assert await _ids(store, query, "inbound") == ["hit"]


async def test_find_items_text_matches_a_field_of_any_list_element(store: Store) -> None:
    await store.enqueue(
        "outbound", "second", {"parts": [{"text": "a"}, {"text": "Promo 50%"}]}, NOW
    )
    await store.enqueue("outbound", "miss", {"parts": [{"text": "hello"}]}, NOW + 1)
    await store.enqueue("outbound", "empty", {"parts": []}, NOW + 2)

    query = ItemQuery(text="promo 50%", text_fields=("parts.text", "error_message"))
    assert await _ids(store, query) == ["second"]


async def test_find_items_text_is_literal_not_a_pattern(store: Store) -> None:
    await store.enqueue("inbound", "dot", {"text": "a.b"}, NOW)
    await store.enqueue("inbound", "any", {"text": "axb"}, NOW + 1)
    await store.enqueue("inbound", "pct", {"text": "100%"}, NOW + 2)

    assert await _ids(store, ItemQuery(text="a.b", text_fields=("text",)), "inbound") == ["dot"]
    assert await _ids(store, ItemQuery(text="0%", text_fields=("text",)), "inbound") == ["pct"]


async def test_find_items_text_with_quotes_or_line_breaks_is_found(store: Store) -> None:
    await store.enqueue("inbound", "quoted", {"text": 'He said "STOP"\nthen left\\'}, NOW)
    await store.enqueue("inbound", "plain", {"text": "He said STOP"}, NOW + 1)

    for text in ('"stop"', 'stop"\nthen', "left\\"):
        query = ItemQuery(text=text, text_fields=("text",))
        assert await _ids(store, query, "inbound") == ["quoted"], text


async def test_find_items_refuses_a_field_that_is_not_a_field_name(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.find_items("outbound", ItemQuery(equal=(("a') OR 1=1 --", "x"),)))
    with pytest.raises(ValueError):
        await store.find_items("outbound", ItemQuery(text="x", text_fields=("parts.$where",)))


async def test_list_docs_with_prefix_lists_only_ids_starting_with_it_by_id(store: Store) -> None:
    for doc_id in ("loc-1:+639170000002", "loc-1:+639170000001", "loc-10:+639170000003", "loc-2:x"):
        await store.put_doc("optouts", doc_id, {"id": doc_id})
    await store.put_doc("other", "loc-1:+639170000009", {})

    found = await store.list_docs_with_prefix("optouts", "loc-1:")

    assert [d.id for d in found] == ["loc-1:+639170000001", "loc-1:+639170000002"]
    assert found[0].data == {"id": "loc-1:+639170000001"}
    assert [d.id for d in await store.list_docs_with_prefix("optouts", "loc-1:", 1)] == [
        "loc-1:+639170000001"
    ]


async def test_count_docs_counts_ids_starting_with_a_prefix(store: Store) -> None:
    for doc_id in ("a:1", "a:2", "ab:3", "b:1"):
        await store.put_doc("optouts", doc_id, {})
    assert await store.count_docs("optouts", "a:") == 2
    assert await store.count_docs("optouts") == 4
    assert await store.count_docs("optouts", "zz") == 0


# One error contract: any driver failure of any operation is StoreUnavailable -----------------

BROKEN_DATABASES = ["sqlite-corrupt", "sqlite-closed", "mongodb-unreachable", "mongodb-closed"]
SAMPLE_VALUES: dict[object, object] = {
    str: "x",
    float: NOW,
    int: 1,
    dict[str, Any]: {},
    ItemQuery: ItemQuery(equal=(("location_id", "x"),), text="x", text_fields=("parts.text",)),
}


def store_operations() -> list[str]:
    """Every operation of the Store protocol, so one added later is covered without a change
    here (`close` aside: it must succeed on a broken store, see below)."""
    operations = inspect.getmembers(Store, inspect.iscoroutinefunction)
    return [name for name, _ in operations if name != "close"]


def sample_arguments(operation: str) -> dict[str, object]:
    """A value of the annotated type for every parameter of `operation`."""
    hints = typing.get_type_hints(getattr(Store, operation))
    hints.pop("return", None)
    missing = [hint for hint in hints.values() if hint not in SAMPLE_VALUES]
    assert not missing, f"add a sample value for {missing} to SAMPLE_VALUES"
    return {name: SAMPLE_VALUES[hint] for name, hint in hints.items()}


@pytest.fixture(params=BROKEN_DATABASES)
async def broken_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose database fails: a SQLite file whose schema is corrupt, a MongoDB server
    that does not answer (nothing listens on the port), or either store after `close`."""
    backend, failure = request.param.split("-")
    if backend == "sqlite":
        store: Store = SQLiteStore(tmp_path / "broken.sqlite3")
        await store.start()
        if failure == "corrupt":
            corrupt_sqlite_schema(tmp_path / "broken.sqlite3")
    else:
        store = MongoStore(unreachable_mongo_uri(), "broken")
    if failure == "closed":
        await store.close()
    try:
        yield store
    finally:
        await store.close()


async def test_every_operation_on_a_failing_database_raises_store_unavailable(
    broken_store: Store,
) -> None:
    # All at once: an unreachable MongoDB fails each operation after server selection (>= 0.5 s).
    operations = store_operations()
    outcomes = await asyncio.gather(
        *(getattr(broken_store, op)(**sample_arguments(op)) for op in operations),
        return_exceptions=True,
    )
    wrong = {
        op: repr(outcome)
        for op, outcome in zip(operations, outcomes, strict=True)
        if not isinstance(outcome, StoreUnavailable)
    }
    assert wrong == {}


async def test_closing_a_store_whose_database_fails_succeeds(broken_store: Store) -> None:
    await broken_store.close()
