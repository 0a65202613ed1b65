"""Unit tests of the OAuth state signer and the app webhook timestamp parser."""

import base64
import json
from datetime import UTC, datetime

import pytest

from app.oauth.service import parse_timestamp
from app.oauth.state import StateError, StateSigner

NOW = 1_800_000_000.0


@pytest.fixture
def signer() -> StateSigner:
    return StateSigner("client-secret", ttl_seconds=900)


def test_a_state_it_issued_verifies(signer: StateSigner):
    signer.verify(signer.issue(NOW), NOW + 899)


def test_each_state_is_different(signer: StateSigner):
    assert signer.issue(NOW) != signer.issue(NOW)


def test_an_expired_state_is_refused(signer: StateSigner):
    state = signer.issue(NOW)
    with pytest.raises(StateError, match="expired"):
        signer.verify(state, NOW + 901)


def test_a_state_with_an_altered_payload_is_refused(signer: StateSigner):
    payload, mac = signer.issue(NOW).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["exp"] += 10_000  # try to extend it
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(StateError, match="signature"):
        signer.verify(f"{forged}.{mac}", NOW)


def test_a_state_with_an_altered_signature_is_refused(signer: StateSigner):
    state = signer.issue(NOW)
    flipped = state[:-1] + ("A" if state[-1] != "A" else "B")
    with pytest.raises(StateError, match="signature"):
        signer.verify(flipped, NOW)


def test_a_state_signed_with_another_secret_is_refused(signer: StateSigner):
    other = StateSigner("another-secret", ttl_seconds=900).issue(NOW)
    with pytest.raises(StateError):
        signer.verify(other, NOW)


@pytest.mark.parametrize("garbage", ["", ".", "abc", "abc.", ".abc", "a.b.c", "%%%.%%%"])
def test_malformed_states_are_refused(signer: StateSigner, garbage: str):
    with pytest.raises(StateError):
        signer.verify(garbage, NOW)


def test_a_signed_payload_that_is_not_json_is_refused(signer: StateSigner):
    payload = base64.urlsafe_b64encode(b"not json").rstrip(b"=").decode()
    state = f"{payload}.{signer._mac(payload)}"
    with pytest.raises(StateError, match="malformed"):
        signer.verify(state, NOW)


def test_the_state_reveals_no_secret(signer: StateSigner):
    assert "client-secret" not in signer.issue(NOW)


ISO_2027 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-01-15T08:00:00.000Z", ISO_2027),
        ("2027-01-15T08:00:00+00:00", ISO_2027),
        ("2027-01-15T08:00:00", ISO_2027),  # no zone: UTC
        (1_800_000_000, NOW),
        (1_800_000_000_000, NOW),
        ("1800000000000", NOW),
    ],
)
def test_webhook_timestamps_in_iso_seconds_or_milliseconds(value: str | float, expected: float):
    assert parse_timestamp(value) == expected


def test_a_timestamp_that_is_not_a_date_is_refused():
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
