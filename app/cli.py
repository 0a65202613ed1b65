"""`cast-ghl`: the operator's command line. Same settings (environment / `.env`), same database and
same repositories as the running bridge; safe to use while bridges run (they pick up a re-queued
message within a poll interval).

    cast-ghl installations            installations, no tokens
    cast-ghl message <messageId>      an outbound message and its history
    cast-ghl messages [--location ID] [--status S] [--phone N] [-q TEXT] [--since T] [--until T]
                      [--direction D] [--limit N] [--cursor C] [--csv]
                                      the message log (both directions), newest first
    cast-ghl locations [--company ID] every sub-account: name, install, route, figures, credits
    cast-ghl requeue <messageId>      send a failed message again
    cast-ghl refused                  messages for uninstalled locations GHL could not be told of
    cast-ghl unroutable               inbound SMS no location could be chosen for
    cast-ghl reroute <id> <location>  deliver one of them to a location
    cast-ghl discard <id>             take one of them off the list
    cast-ghl sender-id <location> [<sender ID> | --clear] [--channel sms|sim]
                                      assign a default-account sender (--clear: all of them)
    cast-ghl sender-id <location> <sender ID> --unassign   take one assigned sender away
    cast-ghl optouts <location>       numbers the location does not text (STOP, Cast, GHL DND)
    cast-ghl lift-optout <location> <number or id> --reason "..."
    cast-ghl check-config             settings, MongoDB/SQLite, GHL and Cast: PASS/FAIL lines
    cast-ghl backup [--to DIR]        copy the embedded SQLite database, 0600 (./backups)
    cast-ghl sandbox                  the whole path on fakes, no credentials

Human-readable output by default; `--json` for scripts. Exit codes: 0 done, 1 refused or a
check failed, 2 invalid settings or usage.
"""

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import httpx
from pydantic import SecretStr, ValidationError

from app.admin.schemas import LiftOptOutBody, MessageView, SenderIdBody
from app.admin.service import AdminService
from app.cast.client import CastClient, CastError
from app.cast.keys import key_label
from app.composition import (
    COMMAND_HTTP_TIMEOUT_SECONDS,
    COMMAND_STORE_TIMEOUT_SECONDS,
    command_services,
    sqlite_file,
)
from app.config import Settings, SettingsError, env_example, load_settings
from app.console import Output, dump, when
from app.ghl.client import GHLClient, GHLError
from app.ghl.pacing import Unpaced
from app.ghl.scopes import AGENCY, DND, INBOUND, OUTBOUND, missing_by_feature
from app.kit.errors import ApiError, validation_error
from app.locations.repository import LocationSettingsRepository
from app.messages.service import message_query
from app.metrics import unobserved
from app.oauth.crypto import build_cipher
from app.oauth.tokens import Refusal, oauth_error, token_refusal
from app.store import StoreUnavailable, build_store
from app.timestamps import utc_iso


# Commands ------------------------------------------------------------------------------------
async def cmd_installations(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    rows = await admin.installations()
    out.listing(
        rows,
        "no installations",
        [
            "id",
            "kind",
            "location",
            "name",
            "company",
            "source",
            "token expires",
            "needs re-install",
        ],
        [
            [
                r.id,
                r.kind,
                r.location_id,
                r.location_name or "-",
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
        out.json(dump(view))
    else:
        _show_message(view, out)
    return 0


async def cmd_requeue(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    view = await admin.requeue(args.message_id)
    if out.as_json:
        out.json({"status": "queued", "message": dump(view)})
    else:
        out.line(f"re-queued {view.message_id}: a running bridge sends it within a second")
    return 0


async def cmd_refused(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    rows = await admin.refused_messages()
    out.listing(
        rows,
        "no refused messages",
        ["message", "location", "received", "refused", "reason"],
        [
            [r.message_id, r.location_id, when(r.received_at), when(r.refused_at), r.reason]
            for r in rows
        ],
    )
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


_MESSAGE_FILTERS = {
    "location": "location_id",
    "direction": "direction",
    "status": "status",
    "since": "since",
    "until": "until",
    "phone": "phone",
    "q": "q",
    "limit": "limit",
    "cursor": "cursor",
}


async def cmd_messages(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    fields = {
        name: str(getattr(args, option))
        for option, name in _MESSAGE_FILTERS.items()
        if getattr(args, option) is not None
    }
    try:
        query = message_query(fields)
    except ApiError as exc:
        print(f"cast-ghl: {exc.message}", file=sys.stderr)
        return 2
    if args.csv:
        async for chunk in admin.export_messages(query):
            out.out.write(chunk)
        return 0
    page = await admin.messages(query)
    if out.as_json:
        out.json(dump(page))
        return 0
    out.listing(
        page.messages,
        "no messages",
        ["at", "dir", "location", "phone", "status", "error", "text", "id"],
        [
            [
                when(m.timestamp),
                "out" if m.direction == "outbound" else "in",
                m.location_name or m.location_id,
                m.phone,
                m.status,
                m.error_code,
                _short(m.text, 40),
                m.id,
            ]
            for m in page.messages
        ],
    )
    if page.next_cursor:
        out.line(f"more: add --cursor {page.next_cursor}")
    return 0


LOCATION_HEADERS = [
    *("name", "location", "company", "installed", "sender", "key"),
    *("24h sent/failed/rate", "7d sent/failed/rate", "opted out", "credits"),
]


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


async def cmd_locations(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    found = await admin.locations(args.company)
    if out.as_json:
        out.json(dump(found))
        return 0
    rows = found.locations
    out.listing(
        rows,
        "no sub-accounts",
        LOCATION_HEADERS,
        [
            [
                r.name,
                r.location_id,
                r.company_id,
                f"re-install: {r.reinstall_reason or 'yes'}"
                if r.needs_reinstall
                else ("yes (agency)" if r.via_agency else "yes" if r.installed else "no"),
                f"{r.sender_id or 'default'} ({r.channel})",
                "own" if r.own_key else "default",
                f"{r.last_24h.sent}/{r.last_24h.failed}/{_rate(r.last_24h.delivery_rate)}",
                f"{r.last_7d.sent}{'+' if r.last_7d.capped else ''}/{r.last_7d.failed}/"
                f"{_rate(r.last_7d.delivery_rate)}",
                r.opted_out,
                r.credits,
            ]
            for r in rows
        ],
    )
    for problem in found.problems:
        out.line(f"could not read {problem}")
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
    if args.unassign and body.sender_id is not None:
        result = await admin.unassign_sender_id(args.location_id, body.sender_id)
    else:
        result = await admin.set_sender_id(args.location_id, body.sender_id, body.channel)
    if out.as_json:
        out.json(dump(result))
    else:
        out.line(
            f"{result.location_id}: sender ID {result.sender_id or '(cleared)'}; its SMS now go "
            f"out as {result.effective_sender_id or "the Cast account's default"} through the "
            f"{result.channel} channel ({_CHANNEL_SOURCES[result.channel_source]})"
            + ("" if result.installed else " (this location has not installed the app)")
        )
        if result.note:
            out.line(f"not checked with Cast: {result.note}")
        if result.assigned_senders:
            out.line(f"assigned on the default account: {', '.join(result.assigned_senders)}")
        if result.shared_with:
            out.line(
                f"shared with {', '.join(result.shared_with)} (same agency): replies to it go "
                "to the one that texted the customer lately"
            )
    return 0


async def cmd_optouts(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    listed = await admin.optouts(args.location_id)
    rows = listed.optouts
    out.listing(
        rows,
        f"no opt-outs in {args.location_id}",
        ["id", "number", "source", "opted out", "keyword", "sender ID", "stays until"],
        [[r.id, r.phone, r.source, when(r.at), r.keyword, r.sender_id, r.until] for r in rows],
    )
    return 0


async def cmd_lift_optout(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    try:
        reason = LiftOptOutBody.model_validate({"reason": args.reason}).reason
    except ValidationError as exc:
        raise validation_error(exc) from None
    lifted = await admin.lift_optout(args.location_id, args.number, reason, "cli")
    if out.as_json:
        out.json({"status": "lifted", "optout": dump(lifted)})
    else:
        out.line(
            f"{lifted.phone} taken off the opt-out list of {lifted.location_id} "
            f"(was: {lifted.source}, {when(lifted.at)}); " + _dnd_after_lift(lifted.source)
        )
    return 0


def _dnd_after_lift(source: str) -> str:
    if source == "ghl":
        return "the SMS DND was set in GHL: clear it there"
    return "the SMS DND the bridge set in GHL is being cleared"


# check-config --------------------------------------------------------------------------------
EXIT_INVALID_SETTINGS = 2
PLACEHOLDER_SETTINGS = ("ghl_client_id", "ghl_client_secret", "cast_api_key")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"})  # noqa: S104
CLIENT_PROBE_REFRESH_TOKEN = "cast-ghl-check-config-not-a-refresh-token"  # noqa: S105
CREDIT_READS_AT_ONCE = 4
CLIENT_ACCEPTED = (
    "GHL_CLIENT_ID/GHL_CLIENT_SECRET accepted (GHL refused only the probe's made-up refresh token)"
)


@dataclass
class Check:
    name: str
    result: str  # PASS, FAIL, WARN, INFO
    detail: str


async def _check_store(settings: Settings) -> Check:
    if settings.uses_mongo:
        database = f"MONGO_DB={settings.mongo_db}" if settings.mongo_db else "MONGO_URI's database"
        what = f"MongoDB ({database})"
    else:
        what = f"embedded SQLite in {settings.data_dir.resolve()}"
    sqlite = sqlite_file(settings)
    if sqlite is not None and not sqlite.exists():
        folder = next((p for p in [sqlite, *sqlite.parents] if p.exists()), sqlite.parent)
        if not os.access(folder, os.W_OK):
            return Check("store", "FAIL", f"{what}: no database yet and {folder} is not writable")
        return Check("store", "PASS", f"{what}: no database yet (the bridge creates it at start)")
    store = build_store(settings)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(store.start(), COMMAND_STORE_TIMEOUT_SECONDS)
        await asyncio.wait_for(store.ping(), COMMAND_STORE_TIMEOUT_SECONDS)
    except Exception as exc:
        return Check("store", "FAIL", f"{what}: not reachable ({_reason(exc)})")
    finally:
        await store.close()
    return Check("store", "PASS", f"{what} answered in {_ms(started)}")


async def _check_ghl(settings: Settings) -> Check:
    url = str(settings.ghl_api_url).rstrip("/")
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=COMMAND_HTTP_TIMEOUT_SECONDS) as http:
            response = await http.get(url + "/")
    except httpx.HTTPError as exc:
        return Check("GHL", "FAIL", f"{url} not reachable ({_reason(exc)})")
    return Check("GHL", "PASS", f"{url} answered HTTP {response.status_code} in {_ms(started)}")


async def _check_cast(settings: Settings) -> tuple[Check, int | None]:
    """The Cast check, and the default key's credits when Cast answered them."""
    url = str(settings.cast_api_url).rstrip("/")
    key = settings.cast_api_key.get_secret_value()
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=COMMAND_HTTP_TIMEOUT_SECONDS) as http:
        try:
            credits = await CastClient(http, unobserved).account_balance(key)
        except CastError as exc:
            if exc.status is None:
                return Check("Cast", "FAIL", f"{url} not reachable ({exc.message})"), None
            if exc.status in (401, 403):
                refused = f"CAST_API_KEY refused by {url} (HTTP {exc.status} {exc.code})"
                return Check("Cast", "FAIL", refused), None
            return Check("Cast", "FAIL", f"{url} answered HTTP {exc.status} ({exc.code})"), None
    sandbox = " (a sandbox key: nothing reaches a carrier)" if key.startswith("cast_test_") else ""
    accepted = f"CAST_API_KEY accepted by {url}: {credits} credits, {_ms(started)}{sandbox}"
    return Check("Cast", "PASS", accepted), credits


async def _check_credits(settings: Settings, default_credits: int | None) -> list[Check]:
    """Each Cast account's credits against its threshold: the default key's against
    LOW_CREDIT_THRESHOLD, each location's own key's against the location's own threshold."""
    default = settings.low_credit_threshold
    low = []
    if default_credits is not None and default_credits < default:
        low.append(f"CAST_API_KEY has {default_credits}, under LOW_CREDIT_THRESHOLD={default}")
    try:
        own = await _own_key_credits(settings)
    except Exception as exc:
        return [Check("credits", "INFO", f"sub-accounts' own keys not read ({_reason(exc)})")]
    for location_id, credits, threshold in own:
        threshold = threshold if threshold is not None else default
        if isinstance(credits, str):
            low.append(f"{location_id}'s own Cast key: balance not read ({credits})")
        elif credits < threshold:
            low.append(
                f"{location_id}'s own Cast key has {credits}, under its threshold {threshold}"
            )
    if low:
        return [Check("credits", "WARN", line) for line in low]
    counted = f"; {len(own)} sub-account key(s) above their own" if own else ""
    return [Check("credits", "PASS", f"every Cast account above its threshold{counted}")]


async def _check_cast_rates(settings: Settings) -> Check:
    """The Cast keys' send rates the cluster shares (slowed down after a 429)."""
    try:
        async with command_services(settings) as services:
            rates = await services.admin.cast_rates()
    except Exception as exc:
        return Check("Cast rate", "INFO", f"not read ({_reason(exc)})")
    fingerprint = key_label(settings.cast_api_key.get_secret_value())
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


async def _check_ghl_credentials(settings: Settings) -> Check:
    """Whether GHL refused the app's client id/secret (noted by the bridge on a refresh)."""
    try:
        async with command_services(settings) as services:
            fault = await services.tokens.client_fault()
    except Exception as exc:
        return Check("GHL app", "INFO", f"not read ({_reason(exc)})")
    if fault is None:
        return Check("GHL app", "PASS", "no refusal of GHL_CLIENT_ID/GHL_CLIENT_SECRET noted")
    return Check(
        "GHL app",
        "FAIL",
        f"GHL refused GHL_CLIENT_ID/GHL_CLIENT_SECRET at {when(fault.get('at'))} (HTTP "
        f"{fault.get('status')} {fault.get('error')}): no token can be refreshed until they "
        "are fixed; no installation was flagged",
    )


async def _own_key_credits(settings: Settings) -> list[tuple[str, int | str, int | None]]:
    """(location id, its own key's credits or why they were not read, its own threshold) of
    every location with its own Cast key; each key asked once, a few at a time."""
    sqlite = sqlite_file(settings)
    if sqlite is not None and not sqlite.exists():
        return []  # no database yet: no location has a key
    async with command_services(settings) as services:
        repository = LocationSettingsRepository(services.store, build_cipher(settings))
        rows = [row for row in await repository.credit_settings() if row[1]]
    url = str(settings.cast_api_url)
    gate = asyncio.Semaphore(CREDIT_READS_AT_ONCE)
    async with httpx.AsyncClient(base_url=url, timeout=COMMAND_HTTP_TIMEOUT_SECONDS) as http:
        cast = CastClient(http, unobserved)

        async def balance(api_key: str) -> int | str:
            async with gate:
                try:
                    return await cast.account_balance(api_key)
                except CastError as exc:
                    return f"HTTP {exc.status} {exc.code}" if exc.status else exc.message

        keys = {key for _, key, _ in rows if key}
        balances = dict(zip(keys, await asyncio.gather(*map(balance, keys)), strict=True))
    return [(location_id, balances[key], threshold) for location_id, key, threshold in rows if key]


async def _check_ghl_client(settings: Settings) -> Check:
    """GHL_CLIENT_ID/GHL_CLIENT_SECRET verified live: a refresh-token grant with a refresh token
    that cannot exist. GHL authenticates the client first (OAuth 2, RFC 6749 5.2), so
    `invalid_grant` means the client id/secret are right, `invalid_client` (or a 401) wrong;
    no token is issued and no installation is touched."""
    form = {
        "grant_type": "refresh_token",
        "client_id": settings.ghl_client_id,
        "client_secret": settings.ghl_client_secret.get_secret_value(),
        "refresh_token": CLIENT_PROBE_REFRESH_TOKEN,
    }
    url = str(settings.ghl_api_url).rstrip("/")
    async with httpx.AsyncClient(base_url=url, timeout=COMMAND_HTTP_TIMEOUT_SECONDS) as http:
        try:
            await GHLClient(http, unobserved, Unpaced()).exchange_token(form)
        except GHLError as exc:
            refusal = token_refusal(exc)
            if refusal is Refusal.GRANT:
                return Check("GHL client", "PASS", CLIENT_ACCEPTED)
            if refusal is Refusal.CLIENT:
                return Check(
                    "GHL client",
                    "FAIL",
                    f"GHL refused GHL_CLIENT_ID/GHL_CLIENT_SECRET (HTTP {exc.status} "
                    f"{oauth_error(exc) or 'unauthorized'}): copy both from the Marketplace "
                    "app's Auth settings",
                )
            return Check("GHL client", "INFO", f"cannot verify the client id/secret ({exc})")
    return Check(
        "GHL client", "INFO", "cannot verify: GHL accepted a refresh token that cannot exist"
    )


def _check_placeholders(settings: Settings) -> list[Check]:
    """Settings still at `.env.example`'s placeholder: the service starts, nothing works."""
    return [
        Check("placeholder", "FAIL", f"{name.upper()} is still .env.example's placeholder")
        for name in PLACEHOLDER_SETTINGS
        if _plain(getattr(settings, name)) == env_example(name)
    ]


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def _check_base_url(settings: Settings) -> Check:
    url = settings.public_base_url
    host = settings.base_url.host or ""
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        return Check(
            "BASE_URL",
            "WARN",
            f"{url} is this machine: GHL cannot reach the OAuth callback or the webhooks (fine "
            "for a local trial only)",
        )
    if settings.base_url.scheme != "https":
        return Check(
            "BASE_URL",
            "WARN",
            f"{url} is not https: GHL needs an https redirect URL and webhook URLs",
        )
    return Check("BASE_URL", "PASS", f"{url} (GHL's redirect URL: {settings.redirect_uri})")


def _check_scopes(settings: Settings) -> Check:
    """The scopes the enabled features' GHL operations need (app/ghl/scopes.py)."""
    features = [OUTBOUND, DND, AGENCY] + ([INBOUND] if settings.inbound_api_key else [])
    missing = missing_by_feature(settings.scope_list, features)
    if not missing:
        return Check("scopes", "PASS", "GHL_SCOPES cover every GHL call of the enabled features")
    lacking = "; ".join(
        f"{feature} need {', '.join(scopes)}" for feature, scopes in missing.items()
    )
    return Check(
        "scopes",
        "WARN",
        f"GHL_SCOPES lack {lacking} (add them to the Marketplace app and GHL_SCOPES, then "
        "re-install)",
    )


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


async def _checks(settings: Settings) -> list[Check]:
    store_kind = "MongoDB" if settings.uses_mongo else "embedded SQLite"
    checks = [Check("settings", "PASS", f"valid; store: {store_kind}")]
    checks += _check_placeholders(settings)
    checks.append(_check_base_url(settings))
    store, ghl, client, (cast, credits) = await asyncio.gather(
        _check_store(settings),
        _check_ghl(settings),
        _check_ghl_client(settings),
        _check_cast(settings),
    )
    checks += [store, ghl, client, cast]
    if store.result == "PASS":
        checks.append(await _check_cast_rates(settings))
        checks.append(await _check_ghl_credentials(settings))
        checks += await _check_credits(settings, credits)
    checks.append(_check_scopes(settings))
    return checks + _features(settings)


async def check_config(out: Output, settings: Settings | None, errors: list[str]) -> int:
    """Exit code 2 for settings that do not validate, 1 when a check FAILs, else 0 (WARN
    included)."""
    if settings is None:
        checks = [Check("settings", "FAIL", line) for line in errors]
    else:
        checks = await _checks(settings)
    failed = any(c.result == "FAIL" for c in checks)
    if out.as_json:
        out.json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            out.line(f"{c.result:<4}  {c.name:<{width}}  {c.detail}")
    if settings is None:
        return EXIT_INVALID_SETTINGS
    return 1 if failed else 0


async def cmd_reencrypt(admin: AdminService, out: Output, args: argparse.Namespace) -> int:
    result = await admin.reencrypt()
    if out.as_json:
        out.json(dump(result))
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


# backup ---------------------------------------------------------------------------------------
BACKUP_DIR = "backups"


def backup_sqlite(database: Path, folder: Path, now: float) -> Path:
    """A consistent copy of the embedded database (SQLite's online backup, safe while bridges
    write), readable by its owner only like the database: the folder 0700, the file 0600 from
    its creation, never a moment wider."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = utc_iso(now).replace(":", "").replace("-", "")
    target = folder / f"cast-ghl-{stamp}.sqlite3"
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source, copy = sqlite3.connect(database), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


async def cmd_backup(out: Output, settings: Settings, folder: str) -> int:
    database = sqlite_file(settings)
    if database is None:
        print(
            "cast-ghl: backup copies the embedded SQLite database; for MongoDB use mongodump "
            "(docs/operations.md#backups)",
            file=sys.stderr,
        )
        return 1
    if not database.exists():
        print(f"cast-ghl: no database at {database}", file=sys.stderr)
        return 1
    target = await asyncio.to_thread(backup_sqlite, database, Path(folder), time.time())
    if out.as_json:
        out.json({"status": "backed_up", "path": str(target)})
    else:
        out.line(f"backed up to {target} (0600); keep TOKEN_ENCRYPTION_KEY with it")
    return 0


# Entry point ---------------------------------------------------------------------------------
COMMANDS = {
    "installations": cmd_installations,
    "message": cmd_message,
    "requeue": cmd_requeue,
    "unroutable": cmd_unroutable,
    "reroute": cmd_reroute,
    "discard": cmd_discard,
    "sender-id": cmd_sender_id,
    "refused": cmd_refused,
    "optouts": cmd_optouts,
    "lift-optout": cmd_lift_optout,
    "reencrypt": cmd_reencrypt,
    "messages": cmd_messages,
    "locations": cmd_locations,
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
    log = sub.add_parser("messages", parents=[common], help="the message log, newest first")
    log.add_argument("--location", help="one location's messages")
    log.add_argument("--direction", choices=["outbound", "inbound"])
    log.add_argument("--status", choices=["pending", "delivered", "failed", "unroutable"])
    log.add_argument("--since", help="from this UTC time on (ISO-8601 date or date-time)")
    log.add_argument("--until", help="before this UTC time (ISO-8601 date or date-time)")
    log.add_argument("--phone", help="the customer's number, any PH spelling")
    log.add_argument("-q", help="text in the message body")
    log.add_argument("--limit", type=int, help="messages per page (default 50, at most 500)")
    log.add_argument("--cursor", help="the next page (printed after a full page)")
    log.add_argument("--csv", action="store_true", help="the whole selection as CSV")
    overview = sub.add_parser("locations", parents=[common], help="every sub-account at a glance")
    overview.add_argument("--company", help="one agency's sub-accounts (its company id)")
    sub.add_parser("requeue", parents=[common], help="send a failed message again")
    sub.choices["requeue"].add_argument("message_id", help="GHL messageId")
    sub.add_parser(
        "refused", parents=[common], help="messages for uninstalled locations GHL was not told of"
    )
    sub.add_parser("unroutable", parents=[common], help="inbound SMS no location took")
    sub.add_parser("reroute", parents=[common], help="deliver an unroutable SMS to a location")
    sub.choices["reroute"].add_argument("inbound_id")
    sub.choices["reroute"].add_argument("location_id")
    sub.add_parser("discard", parents=[common], help="take an unroutable SMS off the list")
    sub.choices["discard"].add_argument("inbound_id")
    sender = sub.add_parser("sender-id", parents=[common], help="assign a sender ID to a location")
    sender.add_argument("location_id")
    sender.add_argument("sender_id", nargs="?")
    sender.add_argument(
        "--clear", action="store_true", help="unassign all; send with the default again"
    )
    sender.add_argument(
        "--unassign", action="store_true", help="take this one sender from the location"
    )
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
    backup = sub.add_parser(
        "backup", parents=[common], help="copy the embedded SQLite database (0600) to --to"
    )
    backup.add_argument("--to", default=BACKUP_DIR, help="folder (default: ./backups)")
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
        return EXIT_INVALID_SETTINGS
    if args.command == "backup":
        return await cmd_backup(output, settings, args.to)
    try:
        async with command_services(settings) as services:
            return await COMMANDS[args.command](services.admin, output, args)
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
