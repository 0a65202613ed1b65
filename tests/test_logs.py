import asyncio
import io
import json
import logging

from app.logs import JsonFormatter, LoopBatchedHandler, mask_phone, mask_phones_in


def test_a_phone_keeps_only_its_last_four_digits():
    assert mask_phone("+63 917 123 4567") == "********4567"


def test_phones_in_free_text_are_masked_but_identifiers_are_not():
    text = "Cannot send to +63 917 123 4567 (part of CAST00000001)"
    assert mask_phones_in(text) == "Cannot send to ********4567 (part of CAST00000001)"


def test_empty_text_stays_empty():
    assert mask_phones_in(None) is None and mask_phones_in("") == ""


def batched_logger(stream: io.StringIO) -> logging.Logger:
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test-batched-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


async def test_lines_logged_in_one_loop_turn_are_written_together_when_it_ends():
    stream = io.StringIO()
    logger = batched_logger(stream)
    logger.info("first")
    logger.info("second")
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    assert events(stream) == ["first", "second"]


def test_a_line_logged_outside_an_event_loop_is_written_at_once():
    stream = io.StringIO()
    batched_logger(stream).info("at once")
    assert events(stream) == ["at once"]


async def test_flush_writes_the_waiting_lines():
    stream = io.StringIO()
    logger = batched_logger(stream)
    logger.info("waiting")
    logger.handlers[0].flush()
    assert events(stream) == ["waiting"]
