"""End-to-end harness: the bridge, fake GHL and fake Cast beside it.

The bridge runs inside the test process (`app.devkit.bridge_thread`) unless `as_process` asks for
a real one (`python -m app`): a SIGKILL, several processes on one database."""

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.devkit.bridge_thread import BridgeThread
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.processes import free_port, start_bridge, stop
from app.devkit.signing import test_keys
from app.ghl.schemas import TokenResponse
from app.oauth.crypto import TokenCipher
from app.oauth.repository import InstallationRepository
from app.oauth.schemas import Installation
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage
from app.store import Store
from app.store.mongo import MongoStore
from app.store.sqlite import SQLiteStore

CAST_KEY = "cast_" + "ab" * 32
SENDER_ID = "CASTTEST"
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-secret"
ENCRYPTION_KEY = Fernet.generate_key().decode()
LOCATION = "loc-1"


CIPHER = TokenCipher(ENCRYPTION_KEY.encode())


def installation_from_pair(
    pair: dict[str, Any], location_id: str = LOCATION, *, expires_in: float | None = None
) -> Installation:
    """The installation the OAuth callback stores for a token answer of the fake GHL."""
    now, answer = time.time(), TokenResponse.model_validate(pair)
    installation = Installation.from_token(
        answer, now, location_id=location_id, user_type="Location"
    )
    if expires_in is not None:
        installation.expires_at = now + expires_in
    return installation


def open_store(env: dict[str, str]) -> Store:
    if env.get("MONGO_URI"):
        return MongoStore(env["MONGO_URI"], env["MONGO_DB"])
    return SQLiteStore(Path(env["DATA_DIR"]) / "cast-ghl.sqlite3")


async def with_store[T](env: dict[str, str], action: Callable[[Store], Any]) -> T:
    """`action` run on the bridge's store, opened for it and closed after."""
    store = open_store(env)
    await store.start()
    try:
        return await action(store)
    finally:
        await store.close()


def webhook(
    message_id: str, phone: str = "+639171234567", message: str = "Hello from GHL", **extra: Any
) -> dict[str, Any]:
    return {
        "contactId": "contact-1",
        "locationId": LOCATION,
        "messageId": message_id,
        "type": "SMS",
        "phone": phone,
        "message": message,
        "attachments": [],
        "userId": "user-1",
        **extra,
    }


@dataclass
class Harness:
    cast: FakeCast
    ghl: FakeGHL
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    as_process: bool = False
    _thread: BridgeThread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Started and not stopped (whether or not it still serves: see `alive`)."""
        return self.proc is not None or self._thread is not None

    @property
    def alive(self) -> bool:
        """Started and still serving: neither the process nor the server thread has ended."""
        if self.proc is not None:
            return self.proc.poll() is None
        return self._thread is not None and self._thread.running

    def start(self) -> None:
        if self.as_process:
            self.proc = start_bridge(self.env, self.port, self.log_path)
            return
        try:
            self._thread = BridgeThread(self.env, self.port, self.log_path).start()
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.logs()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the bridge as `sig` would; returns its exit code. In the test process only a
        graceful stop (SIGTERM, SIGINT) exists: a test that kills is run `as_process`."""
        if self.proc is not None:
            code = stop(self.proc, sig)
            self.proc = None
            return code
        assert self._thread is not None, "the bridge is not running"
        if sig not in (signal.SIGTERM, signal.SIGINT):
            raise ValueError(
                f"{signal.Signals(sig).name} needs a bridge process: mark the test "
                "`process` (or pass as_process=True)"
            )
        thread, self._thread = self._thread, None
        return thread.stop()

    def logs(self) -> str:
        return self.log_path.read_text()

    async def seed_installation(
        self, location_id: str = LOCATION, *, company_id: str | None = None
    ) -> str:
        """Store a location token pair as the OAuth callback would (of `company_id`, else the
        fake GHL's one agency); returns the access token."""
        return (await self.seed_pair(location_id, company_id=company_id))["access_token"]

    async def seed_pair(
        self,
        location_id: str = LOCATION,
        *,
        expires_in: float | None = None,
        company_id: str | None = None,
    ) -> dict[str, Any]:
        """Like `seed_installation`, with the token's lifetime chosen; returns the pair."""
        pair = self.ghl.issue_pair(location_id, company_id)
        installation = installation_from_pair(pair, location_id, expires_in=expires_in)
        await self.with_store(lambda store: InstallationRepository(store, CIPHER).put(installation))
        return pair

    async def with_store[T](self, action: Callable[[Store], Any]) -> T:
        return await with_store(self.env, action)

    async def message(self, message_id: str) -> OutboundMessage | None:
        return await self.with_store(lambda store: OutboxRepository(store).get(message_id))

    async def wait_for_message(
        self,
        message_id: str,
        condition: Callable[[OutboundMessage], bool],
        timeout: float = 15.0,
    ) -> OutboundMessage:
        """The stored message once `condition` holds: what GHL or Cast saw may arrive before
        the bridge has written down that it happened."""
        deadline = time.monotonic() + timeout
        while (found := await self.message(message_id)) is None or not condition(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for message {message_id}: {found}")
            await asyncio.sleep(0.05)
        return found

    async def post(
        self,
        payload: dict[str, Any] | bytes,
        *,
        scheme: str = "ed25519",
        path: str = "/webhooks/ghl/outbound",
        tamper: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        keys = test_keys()
        signed = {"ed25519": keys.ed25519_headers, "rsa": keys.rsa_headers}
        sig_headers = signed[scheme](body) if scheme in signed else {}
        if tamper:
            body = body.replace(b"Hello", b"Hallo")
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            return await client.post(
                path,
                content=body,
                headers={"Content-Type": "application/json", **sig_headers, **(headers or {})},
            )

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; bridge log tail:\n{self.logs()[-3000:]}"
        )

    def statuses_for(self, message_id: str) -> list[dict[str, Any]]:
        return [s["body"] for s in self.ghl.statuses if s["message_id"] == message_id]


def bridge_env(
    store_env: dict[str, str], cast_url: str, ghl_url: str, **extra: str
) -> dict[str, str]:
    return {
        "GHL_CLIENT_ID": CLIENT_ID,
        "GHL_CLIENT_SECRET": CLIENT_SECRET,
        "GHL_WEBHOOK_PUBLIC_KEY": test_keys().public_pems,
        "GHL_API_URL": ghl_url,
        "CAST_API_KEY": CAST_KEY,
        "CAST_API_URL": cast_url,
        "CAST_SENDER_ID": SENDER_ID,
        "TOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "BASE_URL": "http://127.0.0.1",
        "CAST_RATE_PER_KEY": "50",
        # GHL's real limit (100) would pace most tests to 10 msg/s per location: it is set
        # where GHL pacing is the behaviour under test (tests/e2e/test_ghl_pacing.py)
        "GHL_REQUESTS_PER_10S": "100000",
        "DLR_FIRST_POLL_SECONDS": "0.2",
        "DLR_MAX_POLL_INTERVAL_SECONDS": "0.5",
        "DLR_LOGS_INTERVAL_SECONDS": "0.5",
        "CAST_API_TIMEOUT_SECONDS": "2",
        "GHL_API_TIMEOUT_SECONDS": "2",
        "SHUTDOWN_TIMEOUT_SECONDS": "5",
        "LOG_LEVEL": "INFO",
        **store_env,
        **extra,
    }
