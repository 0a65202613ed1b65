"""Outbound SMS end to end: signed webhook -> bridge -> fake Cast -> status at fake GHL."""

import asyncio
import json
import signal

import pytest

from app.devkit.harness import CAST_KEY, Harness, webhook
from tests.support import ON_BOTH_STORES


@ON_BOTH_STORES
async def test_a_signed_webhook_is_sent_through_cast_and_reported_delivered(bridge: Harness):
    response = await bridge.post(webhook("m-happy"))

    assert response.status_code == 202
    assert response.json() == {"status": "queued", "messageId": "m-happy"}
    await bridge.wait_for(lambda: bridge.statuses_for("m-happy"), what="status at GHL")
    (sms,) = bridge.cast.sent
    assert (sms["to"], sms["message"], sms["sender_id"]) == (
        "09171234567",
        "Hello from GHL",
        "CASTTEST",
    )
    assert sms["key"] == CAST_KEY
    assert sms["idempotency_key"] == "ghl:m-happy:1/1"
    assert bridge.statuses_for("m-happy") == [{"status": "delivered"}]
    stored = await bridge.wait_for_message("m-happy", lambda message: message.reported)
    assert stored.parts[0].cast_message_id == sms["message_id"]


async def test_the_go_bridge_delivery_path_is_served_too(bridge: Harness):
    response = await bridge.post(webhook("m-legacy-path"), path="/api/ghl/v1/webhook/messages")

    assert response.status_code == 202
    await bridge.wait_for(lambda: bridge.statuses_for("m-legacy-path"), what="status")


async def test_a_legacy_rsa_signature_is_accepted(bridge: Harness):
    response = await bridge.post(webhook("m-rsa"), scheme="rsa")

    assert response.status_code == 202
    await bridge.wait_for(lambda: bridge.cast.sent, what="send")


async def test_a_repeated_webhook_is_acknowledged_and_sent_once(bridge: Harness):
    first = await bridge.post(webhook("m-dup"))
    await bridge.wait_for(lambda: bridge.statuses_for("m-dup"), what="status")
    second = await bridge.post(webhook("m-dup"))

    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["status"] == "duplicate"
    await asyncio.sleep(0.5)
    assert len(bridge.cast.sent) == 1


async def test_concurrent_copies_of_one_webhook_send_once(bridge: Harness):
    responses = await asyncio.gather(*(bridge.post(webhook("m-race")) for _ in range(10)))

    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
    await bridge.wait_for(lambda: bridge.statuses_for("m-race"), what="status")
    await asyncio.sleep(0.5)
    assert len(bridge.cast.sent) == 1


async def test_missing_signature_is_refused_and_nothing_stored(bridge: Harness):
    response = await bridge.post(webhook("m-unsigned"), scheme="none")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await bridge.message("m-unsigned") is None


async def test_a_signature_of_other_bytes_is_refused(bridge: Harness):
    response = await bridge.post(webhook("m-tampered"), tamper=True)

    assert response.status_code == 401
    assert await bridge.message("m-tampered") is None


async def test_a_signature_by_another_key_is_refused(bridge: Harness):
    body = json.dumps(webhook("m-forged")).encode()
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519

    forged = base64.b64encode(ed25519.Ed25519PrivateKey.generate().sign(body)).decode()
    response = await bridge.post(body, scheme="none", headers={"X-GHL-Signature": forged})

    assert response.status_code == 401
    assert await bridge.message("m-forged") is None


async def test_the_header_value_na_counts_as_no_signature(bridge: Harness):
    response = await bridge.post(webhook("m-na"), scheme="none", headers={"X-GHL-Signature": "N/A"})

    assert response.status_code == 401


async def test_malformed_json_is_a_400(bridge: Harness):
    response = await bridge.post(b'{"messageId": ', scheme="ed25519")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


async def test_a_missing_message_id_is_a_422_naming_it(bridge: Harness):
    payload = webhook("m-noid")
    del payload["messageId"]
    response = await bridge.post(payload)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "messageId"


async def test_a_message_without_a_phone_is_accepted_and_reported_failed(bridge: Harness):
    payload = webhook("m-nophone")
    del payload["phone"]
    response = await bridge.post(payload)

    assert response.status_code == 202  # a 4xx would leave it pending in GHL for ever
    await bridge.wait_for(lambda: bridge.statuses_for("m-nophone"), what="status")
    (status,) = bridge.statuses_for("m-nophone")
    assert (status["status"], status["error"]["code"]) == ("failed", "INVALID_PHONE")
    assert bridge.cast.sent == []


async def test_a_non_sms_type_is_acknowledged_and_ignored(bridge: Harness):
    response = await bridge.post(webhook("m-email", type="Email"))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    await asyncio.sleep(0.3)
    assert bridge.cast.sent == [] and await bridge.message("m-email") is None


async def test_a_us_number_fails_with_a_reason_and_is_never_sent(bridge: Harness):
    await bridge.post(webhook("m-us", phone="+14155550123"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-us"), what="status")
    (status,) = bridge.statuses_for("m-us")
    assert status["status"] == "failed"
    assert status["error"]["code"] == "INVALID_PHONE"
    assert "not a Philippine number" in status["error"]["message"]
    assert bridge.cast.sent == []


async def test_a_manila_landline_fails_as_not_a_mobile(bridge: Harness):
    await bridge.post(webhook("m-landline", phone="(02) 8555 1234"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-landline"), what="status")
    assert "landline" in bridge.statuses_for("m-landline")[0]["error"]["message"]


async def test_a_long_body_is_split_at_words_into_ordered_parts(bridge: Harness):
    text = " ".join(f"word{i:03d}" for i in range(120))  # 959 characters
    await bridge.post(webhook("m-long", message=text))

    await bridge.wait_for(lambda: bridge.statuses_for("m-long"), what="status")
    parts = [sms["message"] for sms in bridge.cast.sent]
    assert len(parts) == 3 and all(len(p) <= 450 for p in parts)
    assert " ".join(parts) == text
    assert [sms["idempotency_key"] for sms in bridge.cast.sent] == [
        "ghl:m-long:1/3",
        "ghl:m-long:2/3",
        "ghl:m-long:3/3",
    ]
    assert bridge.statuses_for("m-long") == [{"status": "delivered"}]


async def test_a_unicode_body_arrives_unchanged(bridge: Harness):
    text = "Salamat po! 🙏 Ñoño — ₱500"
    await bridge.post(webhook("m-unicode", message=text))

    await bridge.wait_for(lambda: bridge.cast.sent, what="send")
    assert bridge.cast.sent[0]["message"] == text


async def test_attachment_urls_are_appended_to_the_text(bridge: Harness):
    await bridge.post(webhook("m-mms", message="See photo", attachments=["https://x.test/a.jpg"]))

    await bridge.wait_for(lambda: bridge.cast.sent, what="send")
    assert bridge.cast.sent[0]["message"] == "See photo\nhttps://x.test/a.jpg"


async def test_cast_429_is_retried_after_retry_after_then_delivered(bridge: Harness):
    bridge.cast.fail_next(2, 429, code="RATE_LIMIT_EXCEEDED", headers={"Retry-After": "0"})
    await bridge.post(webhook("m-429"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-429"), what="status")
    assert bridge.statuses_for("m-429") == [{"status": "delivered"}]
    assert len(bridge.cast.sent) == 1
    assert [r["status"] for r in bridge.cast.requests] == [429, 429, 200]


async def test_cast_5xx_until_the_deadline_reports_failed(harness: Harness):
    harness.env["SEND_DEADLINE_SECONDS"] = "2"
    harness.cast.fail_next(100, 503, code="SERVICE_UNAVAILABLE")
    await harness.seed_installation()
    harness.start()
    await harness.post(webhook("m-5xx"))

    await harness.wait_for(lambda: harness.statuses_for("m-5xx"), timeout=20, what="status")
    (status,) = harness.statuses_for("m-5xx")
    assert status["status"] == "failed"
    assert status["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Gave up" in status["error"]["message"]
    assert len(harness.cast.requests) >= 2


async def test_cast_400_fails_at_once_with_casts_error(bridge: Harness):
    bridge.cast.fail_next(1, 400, code="VALIDATION_ERROR")
    await bridge.post(webhook("m-400"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-400"), what="status")
    (status,) = bridge.statuses_for("m-400")
    assert status["status"] == "failed" and status["error"]["code"] == "VALIDATION_ERROR"
    assert len(bridge.cast.requests) == 1


async def test_cast_402_no_credits_is_logged_as_an_operator_problem(bridge: Harness):
    bridge.cast.fail_next(1, 402, code="INSUFFICIENT_CREDITS")
    await bridge.post(webhook("m-402"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-402"), what="status")
    assert bridge.statuses_for("m-402")[0]["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert '"level": "error"' in bridge.logs() and "operator action needed" in bridge.logs()


async def test_ghl_403_not_downstreamed_is_retried_until_accepted(bridge: Harness):
    bridge.ghl.status_script.extend([403, 403])
    await bridge.post(webhook("m-403"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-403"), timeout=20, what="status")
    assert len([r for r in bridge.ghl.status_requests if r["message_id"] == "m-403"]) == 3
    assert bridge.ghl.refresh_calls() == []


async def test_status_updates_carry_the_bearer_token_and_version(bridge: Harness):
    await bridge.post(webhook("m-headers"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-headers"), what="status")
    (entry,) = [s for s in bridge.ghl.statuses if s["message_id"] == "m-headers"]
    assert entry["version"] == "2021-04-15" and entry["token"].startswith("access-")


async def test_a_401_refreshes_the_token_once_and_retries(bridge: Harness):
    for token in list(bridge.ghl.valid_tokens):
        bridge.ghl.revoke(token)
    await bridge.post(webhook("m-401"))

    await bridge.wait_for(lambda: bridge.statuses_for("m-401"), what="status")
    assert len(bridge.ghl.refresh_calls()) == 1


async def test_nothing_in_the_logs_reveals_tokens_keys_or_full_numbers(bridge: Harness):
    await bridge.post(webhook("m-logs"))
    await bridge.wait_for(lambda: bridge.statuses_for("m-logs"), what="status")

    logs = bridge.logs()
    assert CAST_KEY not in logs and "access-" not in logs and "refresh-" not in logs
    assert "9171234567" not in logs and "*4567" in logs


@pytest.mark.process  # SIGKILL
@ON_BOTH_STORES
async def test_sigkill_after_the_ack_and_before_the_send_sends_exactly_once(harness: Harness):
    # Cast stalls past the client timeout, so the bridge is killed mid-send after the ack.
    harness.cast.fail_next(1, 200, stall_seconds=30)
    await harness.seed_installation()
    harness.env["LEASE_SECONDS"] = "3"
    harness.start()
    response = await harness.post(webhook("m-crash"))
    assert response.status_code == 202
    await harness.wait_for(lambda: harness.cast.requests, what="first send attempt")
    harness.stop(signal.SIGKILL)
    assert harness.cast.sent == []

    harness.start()
    await harness.wait_for(lambda: harness.statuses_for("m-crash"), timeout=20, what="status")
    await asyncio.sleep(0.5)
    assert len(harness.cast.sent) == 1
    assert harness.statuses_for("m-crash") == [{"status": "delivered"}]


@pytest.mark.process  # SIGKILL
async def test_a_crash_after_cast_accepted_does_not_send_a_second_sms(harness: Harness):
    # GHL stalls, so the bridge dies after Cast accepted but before the status is reported.
    await harness.seed_installation()
    harness.env["LEASE_SECONDS"] = "3"
    harness.ghl.status_script.extend([500] * 3)
    harness.start()
    await harness.post(webhook("m-after-cast"))
    await harness.wait_for(lambda: harness.cast.sent, what="send")
    harness.stop(signal.SIGKILL)

    harness.start()
    await harness.wait_for(lambda: harness.statuses_for("m-after-cast"), timeout=30, what="status")
    assert len(harness.cast.sent) == 1
