"""`cast-ghl`: the operator's command line. Same settings (environment / `.env`), same database and
same repositories as the running bridge; safe to use while bridges run (they pick up a re-queued
message within a poll interval).

    cast-ghl installations            installations, no tokens
    cast-ghl message <messageId>      an outbound message and its history
    cast-ghl requeue <messageId>      send a failed message again
    cast-ghl unroutable               inbound SMS no location could be chosen for
    cast-ghl reroute <id> <location>  deliver one of them to a location
    cast-ghl discard <id>             take one of them off the list
    cast-ghl sender-id <location> [<sender ID> | --clear] [--channel sms|sim]
    cast-ghl optouts <location>       numbers the location does not text (STOP, Cast)
    cast-ghl lift-optout <location> <number or id> --reason "..."
    cast-ghl check-config             settings, MongoDB/SQLite, GHL and Cast: PASS/FAIL lines
    cast-ghl sandbox                  the whole path on fakes, no credentials (repository checkout)

Human-readable output by default; `--json` for scripts. Exit codes: 0 done, 1 refused or a
check failed, 2 invalid settings or usage.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from pydantic import BaseModel, ValidationError

from app.admin.schemas import LiftOptOutBody, MessageView, SenderIdBody
from app.admin.service import AdminService
from app.cast.client import CastClient, CastError
from app.cast.pacing import CastPacer, key_fingerprint
from app.cast.senders import SenderDirectory
from app.config import Settings, SettingsError, load_settings
from app.errors import ApiError, validation_error
from app.inbound.repository import InboxRepository
from app.inbound.service import InboundService
from app.locations.accounts import CastAccounts
from app.locations.repository import LocationSettingsRepository
from app.metrics import Counters
from app.oauth.crypto import build_cipher
from app.oauth.repository import InstallationRepository
from app.optouts.repository import DndQueue, OptOutList
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository
from app.store import SQLITE_FILENAME, StoreUnavailable, build_store

STORE_TIMEOUT_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 10.0


class Output:
    """Tables for people, JSON for scripts."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json = out, as_json

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, ensure_ascii=False, default=str), file=self.out)

    def listing(
        self,
        items: Sequence[BaseModel],
        empty: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """A list command's answer: JSON of the items, a line when empty, else the table."""
        if self.as_json:
            self.json([_dump(item) for item in items])
        elif not items:
            self.line(empty)
        else:
            self.table(headers, rows)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            self.line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _dump(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json", by_alias=True)


# The repositories, as the bridge builds them --------------------------------------------------
def _sqlite_file(settings: Settings) -> Path | None:
    """The embedded store's file, when the settings use it."""
    return None if settings.uses_mongo else settings.data_dir.resolve() / SQLITE_FILENAME


@asynccontextmanager
async def admin_service(settings: Settings) -> AsyncIterator[AdminService]:
    sqlite = _sqlite_file(settings)
    if sqlite is not None and not sqlite.exists():  # do not create an empty one by mistake
        raise StoreUnavailable(f"no database at {sqlite}: is DATA_DIR (or MONGO_URI) right?")
    store = build_store(settings)
    await asyncio.wait_for(store.start(), STORE_TIMEOUT_SECONDS)
    cast_http = httpx.AsyncClient(base_url=str(settings.cast_api_url), timeout=HTTP_TIMEOUT_SECONDS)
    try:
        cipher = build_cipher(settings)
        counters = Counters()
        inbox = InboxRepository(store)
        location_settings = LocationSettingsRepository(store, cipher)
        senders = SenderDirectory(CastClient(cast_http))  # sender IDs are checked with Cast
        yield AdminService(
            InstallationRepository(store, cipher),
            OutboxRepository(store),
            inbox,
            InboundService(inbox, counters, lambda: None),
            location_settings,
            CastAccounts(settings, location_settings, senders=senders),
            counters,
            CastPacer(store, settings.cast_rate_per_key, settings.cast_ip_rate),
            optouts=OptOutService(settings, OptOutList(store), DndQueue(store), counters),
        )
    finally:
        await cast_http.aclose()
        await store.close()


# Commands ------------------------------------------------------------------------------------
async def cmd_installations(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    rows = await admin.installations()
    out.listing(
        rows,
        "no installations",
        ["id", "kind", "location", "company", "source", "token expires", "needs re-install"],
        [
            [
                r.id,
                r.kind,
                r.location_id,
                r.company_id,
                r.source,
                when(r.expires_at),
                (r.reauth_reason or "yes") if r.needs_reauth else "no",
            ]
            for r in rows
        ],
    )
    return 0


def _show_message(view: MessageView, out: Output) -> None:
    out.line(f"message    {view.message_id}")
    out.line(f"location   {view.location_id}  (contact {view.contact_id or '-'}, to {view.to})")
    status = view.status
    if view.error_code:
        status += f"  {view.error_code}: {view.error_message or ''}"
    elif view.delivery:
        status += f" ({view.delivery})"
    out.line(f"status     {status}")
    out.line(
        f"state      {view.state}, stage {view.stage}, reported to GHL: "
        f"{'yes' if view.reported else 'no'}" + (", test SMS" if view.synthetic else "")
    )
    out.line(f"received   {when(view.received_at)}   finished {when(view.finished_at)}")
    if view.channel:
        out.line(f"route      {view.channel} channel, sender {view.sender_id or "Cast's default"}")
    out.line(
        f"attempts   send {view.send_attempts}, report {view.report_attempts}, "
        f"polls {view.polls}, re-queued {view.requeues}"
    )
    out.line("parts")
    out.table(
        ["  #", "chars", "channel", "cast message id", "receipt", "carrier status"],
        [
            [f"  {i}", p.chars, p.channel, p.cast_message_id, p.dlr, p.dlr_status]
            for i, p in enumerate(view.parts, start=1)
        ],
    )
    out.line("history")
    out.table(
        ["  at", "event", "detail"],
        [[f"  {when(e.at)}", e.event, e.detail] for e in view.history],
    )


async def cmd_message(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    view = await admin.message(args.message_id)
    if out.as_json:
        out.json(_dump(view))
    else:
        _show_message(view, out)
    return 0


async def cmd_requeue(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    view = await admin.requeue(args.message_id)
    if out.as_json:
        out.json({"status": "queued", "message": _dump(view)})
    else:
        out.line(f"re-queued {view.message_id}: a running bridge sends it within a second")
    return 0


async def cmd_unroutable(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    rows = await admin.unroutable()
    out.listing(
        rows,
        "no unroutable inbound SMS",
        ["id", "from", "to", "received", "text"],
        [[r.id, r.sender, r.to, r.received_at, _short(r.text)] for r in rows],
    )
    return 0


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def cmd_reroute(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    await admin.reroute(args.inbound_id, args.location_id)
    if out.as_json:
        out.json({"status": "queued", "id": args.inbound_id, "location_id": args.location_id})
    else:
        out.line(f"re-routed {args.inbound_id} to {args.location_id}")
    return 0


async def cmd_discard(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    await admin.discard(args.inbound_id)
    if out.as_json:
        out.json({"status": "discarded", "id": args.inbound_id})
    else:
        out.line(f"discarded {args.inbound_id}")
    return 0


_CHANNEL_SOURCES = {
    "setting": "set by hand",
    "cast": "as Cast lists the sender ID",
    "assumed": "assumed: Cast's sender-ID list could not be read",
}


async def cmd_sender_id(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    if args.sender_id is None and not args.clear:
        raise ApiError(422, "invalid_payload", "give a sender ID or --clear", "sender_id")
    try:
        body = SenderIdBody.model_validate({"sender_id": args.sender_id, "channel": args.channel})
    except ValidationError as exc:
        raise validation_error(exc) from None
    result = await admin.set_sender_id(args.location_id, body.sender_id, body.channel)
    if out.as_json:
        out.json(_dump(result))
    else:
        out.line(
            f"{result.location_id}: sender ID {result.sender_id or '(cleared)'}; its SMS now go "
            f"out as {result.effective_sender_id or "the Cast account's default"} through the "
            f"{result.channel} channel ({_CHANNEL_SOURCES[result.channel_source]})"
            + ("" if result.installed else " (this location has not installed the app)")
        )
        if result.note:
            out.line(f"not checked with Cast: {result.note}")
    return 0


async def cmd_optouts(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    listed = await admin.optouts(args.location_id)
    rows = listed.optouts
    out.listing(
        rows,
        f"no opt-outs in {args.location_id}",
        ["id", "number", "source", "opted out", "keyword", "sender ID"],
        [[r.id, r.phone, r.source, when(r.at), r.keyword, r.sender_id] for r in rows],
    )
    return 0


async def cmd_lift_optout(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    try:
        reason = LiftOptOutBody.model_validate({"reason": args.reason}).reason
    except ValidationError as exc:
        raise validation_error(exc) from None
    lifted = await admin.lift_optout(args.location_id, args.number, reason, "cli")
    if out.as_json:
        out.json({"status": "lifted", "optout": _dump(lifted)})
    else:
        out.line(
            f"{lifted.phone} taken off the opt-out list of {lifted.location_id} "
            f"(was: {lifted.source}, {when(lifted.at)}); the contact's DND in GHL is unchanged"
        )
    return 0


# check-config --------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    result: str  # PASS, FAIL, INFO
    detail: str


async def _check_store(settings: Settings) -> Check:
    if settings.uses_mongo:
        database = f"MONGO_DB={settings.mongo_db}" if settings.mongo_db else "MONGO_URI's database"
        what = f"MongoDB ({database})"
    else:
        what = f"embedded SQLite in {settings.data_dir.resolve()}"
    sqlite = _sqlite_file(settings)
    if sqlite is not None and not sqlite.exists():
        folder = next((p for p in [sqlite, *sqlite.parents] if p.exists()), sqlite.parent)
        if not os.access(folder, os.W_OK):
            return Check("store", "FAIL", f"{what}: no database yet and {folder} is not writable")
        return Check("store", "PASS", f"{what}: no database yet (the bridge creates it at start)")
    store = build_store(settings)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(store.start(), STORE_TIMEOUT_SECONDS)
        await asyncio.wait_for(store.ping(), STORE_TIMEOUT_SECONDS)
    except Exception as exc:
        return Check("store", "FAIL", f"{what}: not reachable ({_reason(exc)})")
    finally:
        await store.close()
    return Check("store", "PASS", f"{what} answered in {_ms(started)}")


async def _check_ghl(settings: Settings) -> Check:
    url = str(settings.ghl_api_url).rstrip("/")
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
            response = await http.get(url + "/")
    except httpx.HTTPError as exc:
        return Check("GHL", "FAIL", f"{url} not reachable ({_reason(exc)})")
    return Check("GHL", "PASS", f"{url} answered HTTP {response.status_code} in {_ms(started)}")


async def _check_cast(settings: Settings) -> Check:
    url = str(settings.cast_api_url).rstrip("/")
    key = settings.cast_api_key.get_secret_value()
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as http:
        try:
            credits = await CastClient(http).account_balance(key)
        except CastError as exc:
            if exc.status is None:
                return Check("Cast", "FAIL", f"{url} not reachable ({exc.message})")
            if exc.status in (401, 403):
                return Check(
                    "Cast", "FAIL", f"CAST_API_KEY refused by {url} (HTTP {exc.status} {exc.code})"
                )
            return Check("Cast", "FAIL", f"{url} answered HTTP {exc.status} ({exc.code})")
    sandbox = " (a sandbox key: nothing reaches a carrier)" if key.startswith("cast_test_") else ""
    return Check(
        "Cast",
        "PASS",
        f"CAST_API_KEY accepted by {url}: {credits} credits, {_ms(started)}{sandbox}",
    )


async def _check_cast_rates(settings: Settings) -> Check:
    """The Cast keys' send rates the cluster shares (slowed down after a 429)."""
    try:
        async with admin_service(settings) as admin:
            rates = await admin.cast_rates()
    except Exception as exc:
        return Check("Cast rate", "INFO", f"not read ({_reason(exc)})")
    fingerprint = key_fingerprint(settings.cast_api_key.get_secret_value())
    slowed = [
        f"key {r.key}{' (CAST_API_KEY)' if r.key == fingerprint else ''} at {r.rate:g} msg/s"
        for r in rates.keys
        if r.slowed
    ]
    detail = f"CAST_RATE_PER_KEY={rates.configured:g} msg/s per key"
    if slowed:
        detail += "; slowed down after a 429: " + ", ".join(slowed)
    else:
        detail += "; every key sends at it"
    return Check("Cast rate", "PASS", detail)


def _features(settings: Settings) -> list[Check]:
    off = [
        (settings.inbound_api_key, "inbound", "INBOUND_API_KEY unset: inbound SMS answer 503"),
        (settings.admin_api_key, "admin API", "ADMIN_API_KEY unset: the admin API is off (404)"),
        (settings.ghl_app_sso_key, "settings page", "GHL_APP_SSO_KEY unset: /settings answers 503"),
        (settings.metrics_bearer_token, "metrics", "METRICS_BEARER_TOKEN unset: /metrics is open"),
    ]
    return [Check(name, "INFO", detail) for value, name, detail in off if value is None]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer"
    return str(exc) or type(exc).__name__


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"


async def check_config(out: Output, settings: Settings | None, errors: list[str]) -> int:
    checks: list[Check] = []
    if settings is None:
        checks += [Check("settings", "FAIL", line) for line in errors]
    else:
        store = "MongoDB" if settings.uses_mongo else "embedded SQLite"
        checks.append(Check("settings", "PASS", f"valid; store: {store}"))
        store, ghl, cast = await asyncio.gather(
            _check_store(settings), _check_ghl(settings), _check_cast(settings)
        )
        checks += [store, ghl, cast]
        if store.result == "PASS":
            checks.append(await _check_cast_rates(settings))
        checks += _features(settings)
    failed = any(c.result == "FAIL" for c in checks)
    if out.as_json:
        out.json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.line(f"{c.result:<4}  {c.name:<{width}}  {c.detail}")
    return 1 if failed else 0


async def cmd_reencrypt(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    result = await admin.reencrypt()
    if out.as_json:
        out.json(_dump(result))
    else:
        out.line(
            f"re-encrypted with the newest key: {result.installations} installations, "
            f"{result.location_settings} location settings"
        )
        if result.undecryptable:
            out.line(
                f"{result.undecryptable} record(s) no key decrypts (left unchanged): add the "
                "key they were written with to TOKEN_ENCRYPTION_KEY, or re-install those"
            )
    return 1 if result.undecryptable else 0


# Entry point ---------------------------------------------------------------------------------
COMMANDS = {
    "installations": cmd_installations,
    "message": cmd_message,
    "requeue": cmd_requeue,
    "unroutable": cmd_unroutable,
    "reroute": cmd_reroute,
    "discard": cmd_discard,
    "sender-id": cmd_sender_id,
    "optouts": cmd_optouts,
    "lift-optout": cmd_lift_optout,
    "reencrypt": cmd_reencrypt,
}


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON output for scripts")
    root = argparse.ArgumentParser(
        prog="cast-ghl", description="Operate the Cast SMS bridge for GoHighLevel."
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("installations", parents=[common], help="list installations (no tokens)")
    sub.add_parser("message", parents=[common], help="an outbound message and its history")
    sub.choices["message"].add_argument("message_id", help="GHL messageId")
    sub.add_parser("requeue", parents=[common], help="send a failed message again")
    sub.choices["requeue"].add_argument("message_id", help="GHL messageId")
    sub.add_parser("unroutable", parents=[common], help="inbound SMS no location took")
    sub.add_parser("reroute", parents=[common], help="deliver an unroutable SMS to a location")
    sub.choices["reroute"].add_argument("inbound_id")
    sub.choices["reroute"].add_argument("location_id")
    sub.add_parser("discard", parents=[common], help="take an unroutable SMS off the list")
    sub.choices["discard"].add_argument("inbound_id")
    sender = sub.add_parser("sender-id", parents=[common], help="set a location's sender ID")
    sender.add_argument("location_id")
    sender.add_argument("sender_id", nargs="?")
    sender.add_argument("--clear", action="store_true", help="send with the default again")
    sender.add_argument(
        "--channel",
        choices=["sms", "sim"],
        help="the sender's Cast channel, when Cast's sender-ID list cannot say (default: ask Cast)",
    )
    sub.add_parser("optouts", parents=[common], help="a location's opted-out numbers")
    sub.choices["optouts"].add_argument("location_id")
    lift = sub.add_parser("lift-optout", parents=[common], help="take a number off the list")
    lift.add_argument("location_id")
    lift.add_argument("number", help="the number (any PH format) or the listed id")
    lift.add_argument("--reason", required=True, help="why (logged)")
    sub.add_parser(
        "reencrypt", parents=[common], help="encrypt every stored token and key with the newest key"
    )
    sub.add_parser("check-config", parents=[common], help="settings, database, GHL and Cast")
    sub.add_parser(
        "sandbox", parents=[common], help="the whole path on local fakes, no credentials"
    )
    return root


async def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    output = Output(out or sys.stdout, args.json)
    if args.command == "sandbox":
        from app.sandbox import run_sandbox

        return await run_sandbox(output)
    try:
        settings: Settings | None = load_settings()
        errors: list[str] = []
    except SettingsError as exc:
        settings, errors = None, exc.lines
    if args.command == "check-config":
        return await check_config(output, settings, errors)
    if settings is None:
        print("cast-ghl: invalid configuration", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    try:
        async with admin_service(settings) as admin:
            return await COMMANDS[args.command](admin, output, args)
    except ApiError as exc:
        error = {"code": exc.code, "message": exc.message}
        if output.as_json:
            output.json({"error": error})
        else:
            print(f"cast-ghl: {exc.message}", file=sys.stderr)
        return 1
    except (StoreUnavailable, TimeoutError) as exc:
        print(f"cast-ghl: the store is not reachable ({_reason(exc)})", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(run(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
