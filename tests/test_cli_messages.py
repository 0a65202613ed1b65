"""`cast-ghl messages` and `cast-ghl locations`: the message log and the overview on the
command line, against a real database (SQLite, and MongoDB through the wire server), seeded as
the bridge's workers leave messages."""

import csv
import io
import json
import time

import pytest

from app.devkit.harness import LOCATION, Harness
from tests.e2e.test_message_log import seed_log, sent
from tests.test_cli import env, fakes, harness, run

__all__ = ["env", "fakes", "harness"]  # the CLI tests' fixtures, used here too


async def test_messages_lists_the_log_newest_first_with_numbers_masked(harness: Harness):
    await harness.with_store(seed_log)

    code, text = await run("messages")

    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["at", "dir", "location", "phone", "status", "error", "text", "id"]
    assert lines[1].endswith("gw:r-2") and lines[-1].endswith("m-1")
    assert "2027-01-15T08:00:00Z" in lines[-1] and "********4567" in lines[-1]
    assert "9171234567" not in text


async def test_messages_filters_as_the_admin_api_does(harness: Harness):
    await harness.with_store(seed_log)

    code, as_json = await run(
        "messages", "--location", LOCATION, "--phone", "0917 123 4567", "-q", "order", "--json"
    )

    assert code == 0
    page = json.loads(as_json)
    assert [m["id"] for m in page["messages"]] == ["gw:r-1", "m-1"]
    assert page["next_cursor"] is None


async def test_messages_prints_the_cursor_of_the_next_page(harness: Harness):
    await harness.with_store(seed_log)

    _, first = await run("messages", "--limit", "3")
    cursor = first.splitlines()[-1].removeprefix("more: add --cursor ")
    code, second = await run("messages", "--limit", "3", "--cursor", cursor, "--json")

    assert code == 0
    assert [m["id"] for m in json.loads(second)["messages"]] == ["gw:r-1", "m-1"]


async def test_messages_csv_writes_the_whole_selection(harness: Harness):
    await harness.with_store(seed_log)

    code, text = await run("messages", "--status", "delivered", "--csv")

    assert code == 0
    assert [row["id"] for row in csv.DictReader(io.StringIO(text))] == ["m-3", "gw:r-1", "m-1"]


@pytest.mark.parametrize("argv", [["--phone", "12345"], ["--since", "last week"]])
async def test_messages_refuses_an_invalid_filter_as_a_usage_error(
    harness: Harness, argv: list[str]
):
    await harness.with_store(seed_log)

    code, text = await run("messages", *argv)

    assert code == 2 and text == ""


async def test_locations_shows_every_sub_account_with_its_figures(harness: Harness):
    await harness.seed_installation()
    now = time.time()

    async def figures(store):
        await sent(store, "m-ok", now - 60)
        await sent(store, "m-bad", now - 30, status="failed")

    await harness.with_store(figures)

    code, text = await run("locations")
    json_code, as_json = await run("locations", "--json")

    assert code == 0
    header, row = text.splitlines()
    assert header.split()[:3] == ["name", "location", "company"]
    assert LOCATION in row and "2/1/50%" in row and "default" in row
    (shown,) = json.loads(as_json)["locations"]
    assert json_code == 0 and shown["last_7d"]["delivery_rate"] == 0.5
