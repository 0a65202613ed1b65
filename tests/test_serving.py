"""The server's transport: an answer's head and body go out in one write, in order, and nothing
pending is lost when the connection closes (app/serving.py)."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from app.serving import CoalescedHttpToolsProtocol, CoalescedWrites


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555)}.get(name, default)


async def next_turn() -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def transport() -> tuple[CoalescedWrites, RecordingTransport]:
    real = RecordingTransport()
    return CoalescedWrites(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_writes_of_one_turn_go_out_as_one_write_in_order(transport):
    coalesced, real = transport
    coalesced.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    coalesced.write(b'{"status":"queued"}')
    assert real.calls == []  # nothing sent before the turn ends
    await next_turn()
    assert real.calls == [("write", b'HTTP/1.1 202 Accepted\r\n\r\n{"status":"queued"}')]


async def test_writes_of_later_turns_go_out_separately(transport):
    coalesced, real = transport
    coalesced.write(b"one")
    await next_turn()
    coalesced.writelines([b"two", b"three"])
    await next_turn()
    assert real.calls == [("write", b"one"), ("write", b"twothree")]


@pytest.mark.parametrize("end", ["close", "write_eof"])
async def test_ending_the_stream_sends_what_is_pending_first(transport, end: str):
    coalesced, real = transport
    coalesced.write(b"last answer")
    getattr(coalesced, end)()
    await next_turn()
    assert real.calls == [("write", b"last answer"), (end, b"")]


async def test_aborting_drops_what_is_pending(transport):
    coalesced, real = transport
    coalesced.write(b"never sent")
    coalesced.abort()
    await next_turn()
    assert real.calls == [("abort", b"")]


async def test_a_write_pending_when_the_peer_went_away_is_dropped(transport):
    coalesced, real = transport
    coalesced.write(b"too late")
    real.closing = True  # connection lost before the turn ended
    await next_turn()
    assert real.calls == []


async def test_pending_bytes_count_in_the_write_buffer_size(transport):
    coalesced, _ = transport
    coalesced.write(b"12345")
    assert coalesced.get_write_buffer_size() == 5


async def test_other_attributes_are_the_real_transports(transport):
    coalesced, _ = transport
    assert coalesced.get_extra_info("peername") == ("127.0.0.1", 5555)


# Served by uvicorn over loopback ----------------------------------------------------------------
async def _answer(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    message = await receive()
    body = b'{"echo":"' + message.get("body", b"") + b'"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        _answer, host="127.0.0.1", port=port, http=CoalescedHttpToolsProtocol, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield port
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _request(body: bytes, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST /w HTTP/1.1\r\nHost: x\r\n" + connection + b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


async def test_pipelined_requests_on_one_connection_get_whole_answers_in_order(server_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
    writer.write(_request(b"a") + _request(b"b") + _request(b"c", close=True))
    received = await asyncio.wait_for(reader.read(), timeout=10)  # until the server closes
    writer.close()
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [answer.rsplit(b"\r\n\r\n", 1)[1] for answer in answers] == [
        b'{"echo":"a"}',
        b'{"echo":"b"}',
        b'{"echo":"c"}',
    ]
    assert all(answer.startswith(b"202 Accepted\r\n") for answer in answers)
