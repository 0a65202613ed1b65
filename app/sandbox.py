"""`cast-ghl sandbox`: the whole path on this machine, no credentials.

Starts the fake GHL and the fake Cast the test suite uses (`app/devkit/`, one implementation),
then the bridge itself (`python -m app`, embedded SQLite in a temporary directory, test signing
keys), installs a location whose sender ID is a SIM number (Cast's SIM gateway: the two-way
channel, issue 21), and walks:

1. GHL → bridge: a signed ProviderOutboundMessage;
2. bridge → Cast: the SMS through `/api/v1/sim/send` (then the receipt poll on `/sim/status`);
3. bridge → GHL: the status `delivered`;
4. Cast's gateway → bridge: the recipient's reply, addressed to the SIM number;
5. bridge → GHL: the contact and the inbound message in its conversation;

and prints what each side saw. It runs from a checkout, an installed wheel or the Docker image
alike: the development kit ships in the package.
"""

import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

import httpx

from app.admin.schemas import MessageView
from app.composition import command_services
from app.config import Settings
from app.console import Output, when
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import (
    CAST_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    LOCATION,
    Harness,
    bridge_env,
    webhook,
)
from app.devkit.processes import start_bridge
from app.devkit.server_thread import ServerThread
from app.kit.errors import ApiError

PHONE = "+639171234567"
SENDER_ID = "+639170000001"  # a SIM number Cast approved for the `sim` channel: replies come back
OUTBOUND_ID = "sandbox-msg-1"
REPLY_ID = "sandbox-reply-1"
TEXT = "Hello from the Cast SMS sandbox"
REPLY = "YES, see you at 3"
WAIT_SECONDS = 30.0


async def run_sandbox(out: Output) -> int:
    with tempfile.TemporaryDirectory(prefix="cast-ghl-sandbox-") as tmp:
        report = await _walk(Path(tmp))
    if out.as_json:
        out.json(report)
    else:
        _print(report, out)
    return 0 if report["ok"] else 1


async def _walk(tmp: Path) -> dict[str, Any]:
    cast = FakeCast({CAST_KEY}, per_key_rate=50)
    cast.approve(CAST_KEY, SENDER_ID, "sim")
    ghl = FakeGHL(CLIENT_ID, CLIENT_SECRET)
    cast_server, ghl_server = ServerThread(cast.app).start(), ServerThread(ghl.app).start()
    gateway_key = secrets.token_urlsafe(24)
    env = bridge_env(
        {"MONGO_URI": "", "DATA_DIR": str(tmp / "data")},
        cast_server.url,
        ghl_server.url,
        INBOUND_API_KEY=gateway_key,
        CAST_SENDER_ID=SENDER_ID,
        ADMIN_API_KEY=secrets.token_urlsafe(24),  # whatever the shell exports, not used here
        METRICS_BEARER_TOKEN="",
        DELIVERY_STATUS_MODE="carrier",
        INBOUND_ROUTES="",
        GHL_CONVERSATION_PROVIDER_ID="",
    )
    harness = Harness(cast=cast, ghl=ghl, env=env, log_path=tmp / "bridge.log")
    report: dict[str, Any] = {
        "ok": False,
        "bridge": harness.url,
        "store": f"embedded SQLite in {tmp / 'data'} (removed afterwards)",
        "fake_ghl": ghl_server.url,
        "fake_cast": cast_server.url,
        "location": LOCATION,
        "steps": [],
    }
    steps: list[dict[str, Any]] = report["steps"]
    try:
        await harness.seed_installation(LOCATION)
        harness.proc = start_bridge(env, harness.port, harness.log_path, cwd=tmp)

        # 1-3: outbound
        sent = await harness.post(webhook(OUTBOUND_ID, phone=PHONE, message=TEXT))
        steps.append(
            {
                "side": "GHL → bridge",
                "what": f"signed ProviderOutboundMessage {OUTBOUND_ID} to {PHONE}",
                "answer": f"HTTP {sent.status_code} {sent.json().get('status')}",
            }
        )
        await harness.wait_for(
            lambda: harness.statuses_for(OUTBOUND_ID), WAIT_SECONDS, "the status at GHL"
        )
        for sms in cast.sent:
            steps.append(
                {
                    "side": "Cast received",
                    "what": f"POST /api/v1/{sms['channel']}/send: SMS to {sms['to']} from "
                    f"sender ID {sms['sender_id']}: {sms['message']!r}",
                    "answer": f"{sms['message_id']} (X-Idempotency-Key {sms['idempotency_key']})",
                }
            )
        if cast.status_requests:
            steps.append(
                {
                    "side": "Cast received",
                    "what": f"{len(cast.status_requests)} delivery receipt poll(s) "
                    f"GET /api/v1/{cast.sent[-1]['channel']}/status/{cast.status_requests[-1]}",
                    "answer": "delivered (DELIVRD)",
                }
            )
        for status in harness.statuses_for(OUTBOUND_ID):
            steps.append(
                {
                    "side": "GHL received",
                    "what": f"PUT /conversations/messages/{OUTBOUND_ID}/status",
                    "answer": json.dumps(status),
                }
            )

        # 4-5: the reply
        async with httpx.AsyncClient(base_url=harness.url, timeout=10) as client:
            reply = await client.post(
                "/webhooks/cast/inbound",
                headers={"X-API-Key": gateway_key},
                json={"from": "09171234567", "message": REPLY, "to": SENDER_ID, "id": REPLY_ID},
            )
        steps.append(
            {
                "side": "gateway → bridge",
                "what": f"inbound SMS from 09171234567 to {SENDER_ID}: {REPLY!r}",
                "answer": f"HTTP {reply.status_code} {reply.json().get('status')}",
            }
        )
        await harness.wait_for(lambda: ghl.inbound, WAIT_SECONDS, "the reply at GHL")
        for upsert in ghl.contact_upserts:
            steps.append(
                {
                    "side": "GHL received",
                    "what": "POST /contacts/upsert",
                    "answer": json.dumps(upsert),
                }
            )
        for opened in ghl.calls_to("POST", "/conversations/"):
            steps.append(
                {
                    "side": "GHL received",
                    "what": "POST /conversations/",
                    "answer": json.dumps(opened["body"]),
                }
            )
        for added in ghl.inbound:
            body = added["body"]
            steps.append(
                {
                    "side": "GHL received",
                    "what": "POST /conversations/messages/inbound",
                    "answer": json.dumps(
                        {
                            k: body.get(k)
                            for k in ("type", "message", "conversationId", "contactId", "direction")
                        }
                    ),
                }
            )

        stored = await _outbound_view(env)
        report["history"] = [
            {"at": e.at, "event": e.event, "detail": e.detail} for e in stored.history
        ]
        async with httpx.AsyncClient(base_url=harness.url, timeout=10) as client:
            metrics = (await client.get("/metrics")).text
        report["metrics"] = [
            line
            for line in metrics.splitlines()
            if line.startswith(
                ("bridge_messages_total", "bridge_inbound_total", "bridge_cast_parts_accepted")
            )
        ]
        delivered = harness.statuses_for(OUTBOUND_ID) == [{"status": "delivered"}] and all(
            sms["channel"] == "sim" for sms in cast.sent
        )
        report["ok"] = delivered and len(ghl.inbound) == 1
        report["outbound"] = "delivered" if delivered else "not delivered"
        report["inbound"] = "added to the GHL conversation" if ghl.inbound else "not added"
    except (AssertionError, RuntimeError, httpx.HTTPError, ApiError) as exc:
        report["error"] = str(exc)[-2000:]
    finally:
        if harness.proc is not None:
            harness.stop()
        cast_server.stop()
        ghl_server.stop()
    return report


async def _outbound_view(env: dict[str, str]) -> MessageView:
    """The message as `cast-ghl message` shows it, read with the bridge's own settings."""
    settings = Settings(_env_file=None, **{name.lower(): value for name, value in env.items()})
    async with command_services(settings) as services:
        return await services.admin.message(OUTBOUND_ID)


def _print(report: dict[str, Any], out: Output) -> None:
    out.line("Cast SMS sandbox: the bridge between a fake GHL and a fake Cast, no credentials")
    out.line(f"  bridge    {report['bridge']}  ({report['store']})")
    out.line(f"  fake GHL  {report['fake_ghl']}")
    out.line(f"  fake Cast {report['fake_cast']}")
    out.line(f"  location  {report['location']} (installed with a test token)")
    out.line()
    for number, step in enumerate(report["steps"], start=1):
        out.line(f"{number:>2}. {step['side']:<16} {step['what']}")
        out.line(f"    {'':<16} → {step['answer']}")
    if report.get("history"):
        out.line()
        out.line("The bridge's record of the message (cast-ghl message / GET /api/admin/messages):")
        for event in report["history"]:
            out.line(f"    {when(event['at'])}  {event['event']:<16} {event['detail'] or ''}")
    if report.get("metrics"):
        out.line()
        out.line("GET /metrics (excerpt):")
        for line in report["metrics"]:
            out.line(f"    {line}")
    out.line()
    if report["ok"]:
        out.line(f"OK: outbound message {report['outbound']}; the reply was {report['inbound']}.")
    else:
        out.line(f"FAILED: {report.get('error') or 'the walk did not complete'}")
