"""GHL custom-page SSO: CryptoJS-compatible decryption and the page's signed sessions."""

import pytest

from app.locations.sso import Session, SessionSigner, SsoError, decrypt_user
from tests.support.cryptojs import SSO_KEY, cryptojs_encrypt, sso_payload, user_context

# Made by the real crypto-js 4 in node: CryptoJS.AES.encrypt(JSON.stringify(ctx), secret)
CRYPTOJS_VECTOR = (
    "U2FsdGVkX1998TfX3fLicap+joLL3vDreqwE+HmdhmLye8XSncuZ6xy2uvUaVUfN6OXthZS7K0ccI+th0O7bRbIMhLhd"
    "3PqB6aflyEM2UdbZc1u+B/TbVG5nc209iyip99ryZVnZuLXU8jWlBMkAtIzWr7jFrQdB4+cW0E5dLtiUmF5wLCWqUUEC"
    "nL7z4ByakUCXY2o/U6y0hE8JqciwUj4TA9NnSs0uaTrC10KNi/k="
)
# Made by `openssl enc -aes-256-cbc -md md5 -salt -pass pass:vector-secret -base64 -A`
OPENSSL_VECTOR = (
    "U2FsdGVkX18uli1DHocnQPZD+6Fb6mkgqJnFd0OqPZmoxbj9Zj6BzB3JBPUBNhyhtYCCaCUhh03DZMylSQYXME2vDxSm"
    "8IEioyE1yyx0MNE4dAoAU4p5ChRwRggeqPZcU4+4iWBDUoWBrbeOcWSPCQmGlOjNVMDvZzhIIB/TSZH664uTkxDFFnSf"
    "mAv6/KuXn55r7oMteBrr8OI/NI2w0xlZeF/raQ4f3XKqgQHodNM="
)


def test_a_payload_made_by_cryptojs_decrypts_to_the_user() -> None:
    user = decrypt_user(CRYPTOJS_VECTOR, "cryptojs-secret")

    assert (user.user_id, user.company_id, user.role, user.type) == (
        "u-77",
        "c-9",
        "user",
        "location",
    )
    assert (user.user_name, user.active_location) == ("Jose Rizal", "loc-cryptojs")


def test_a_payload_made_by_openssl_decrypts_too() -> None:
    user = decrypt_user(OPENSSL_VECTOR, "vector-secret")

    assert (user.user_id, user.type, user.active_location) == ("u-42", "agency", "loc-vector")


def test_the_test_helper_encrypts_the_cryptojs_way() -> None:
    user = decrypt_user(sso_payload(user_context("loc-9")), SSO_KEY)

    assert user.active_location == "loc-9"


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not base64 at all!",
        "U2FsdGVkX1+AAAAAAAAAAA==",  # header and salt, no ciphertext
        cryptojs_encrypt(b'{"userId": "u"}', "another secret"),
        cryptojs_encrypt(b"not json", SSO_KEY),
        cryptojs_encrypt(b'{"companyId": "c"}', SSO_KEY),  # no userId
        CRYPTOJS_VECTOR[:-8] + "AAAAAAA=",
    ],
    ids=["empty", "garbage", "no-ciphertext", "wrong-key", "not-json", "no-user", "tampered"],
)
def test_every_bad_payload_is_the_same_error(payload: str) -> None:
    with pytest.raises(SsoError, match=r"^invalid SSO payload$"):
        decrypt_user(payload, SSO_KEY)


def session_for(location_id: str = "loc-1", *, admin: bool = True) -> Session:
    return Session(location_id, "user-1", "Maria", 1060.0, "company-1", admin)


def test_a_session_round_trips_until_it_expires() -> None:
    signer = SessionSigner(SSO_KEY, ttl_seconds=60)
    token = signer.issue(session_for())

    assert signer.verify(token, now=1059.0) == session_for()
    assert signer.verify(signer.issue(session_for(admin=False)), now=1059.0).admin is False
    with pytest.raises(SsoError, match="expired"):
        signer.verify(token, now=1060.0)


def test_a_session_signed_with_another_key_or_altered_is_refused() -> None:
    signer = SessionSigner(SSO_KEY, 60)
    token = signer.issue(session_for())
    other = signer.issue(session_for("loc-2"))
    body, _, mac = token.partition(".")
    other_body = other.partition(".")[0]

    for bad in (f"{other_body}.{mac}", f"{body}.", body, "", "a.b.c"):
        with pytest.raises(SsoError):
            signer.verify(bad, now=1000.0)
    with pytest.raises(SsoError):
        SessionSigner("other-key", 60).verify(token, now=1000.0)
