import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from app.devkit.signing import test_keys
from app.ghl.signature import SignatureError, load_webhook_keys, verify_webhook

BODY = b'{"messageId":"m1","message":"hi"}'


@pytest.fixture(scope="module")
def keys():
    return load_webhook_keys(test_keys().public_pems)


def test_ghls_published_keys_are_the_default():
    keys = load_webhook_keys(None)
    assert (len(keys.ed25519), len(keys.rsa)) == (1, 1)
    assert keys.rsa[0].key_size == 4096


def test_an_ed25519_signature_of_the_raw_body_verifies(keys):
    header = test_keys().ed25519_headers(BODY)["X-GHL-Signature"]
    assert verify_webhook(BODY, header, None, keys) == "ed25519"


def test_a_legacy_rsa_signature_verifies(keys):
    header = test_keys().rsa_headers(BODY)["X-WH-Signature"]
    assert verify_webhook(BODY, None, header, keys) == "rsa"


def test_one_changed_byte_fails(keys):
    header = test_keys().ed25519_headers(BODY)["X-GHL-Signature"]
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(BODY.replace(b"hi", b"ho"), header, None, keys)


@pytest.mark.parametrize("value", [None, "", "N/A", "  "])
def test_no_signature_is_refused(keys, value):
    with pytest.raises(SignatureError, match="missing"):
        verify_webhook(BODY, value, value, keys)


def test_garbage_base64_is_refused(keys):
    with pytest.raises(SignatureError):
        verify_webhook(BODY, "%%%not-base64", None, keys)


def test_a_signature_from_another_key_is_refused(keys):
    other = base64.b64encode(ed25519.Ed25519PrivateKey.generate().sign(BODY)).decode()
    with pytest.raises(SignatureError):
        verify_webhook(BODY, other, None, keys)


def test_a_rotated_key_list_accepts_either_key():
    new = ed25519.Ed25519PrivateKey.generate()
    from app.devkit.signing import _pem

    keys = load_webhook_keys(_pem(new.public_key()) + test_keys().public_pems)
    old_sig = test_keys().ed25519_headers(BODY)["X-GHL-Signature"]
    new_sig = base64.b64encode(new.sign(BODY)).decode()
    assert verify_webhook(BODY, old_sig, None, keys) == "ed25519"
    assert verify_webhook(BODY, new_sig, None, keys) == "ed25519"


def test_env_mangled_pem_with_escaped_newlines_and_quotes_loads():
    pem = test_keys().public_pems.replace("\n", "\\n")
    keys = load_webhook_keys(f'"{pem}"')
    assert (len(keys.ed25519), len(keys.rsa)) == (1, 1)


def test_a_bare_base64_key_body_loads():
    body = "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="
    assert len(load_webhook_keys(body).ed25519) == 1


def test_a_broken_configured_key_is_an_error():
    with pytest.raises(ValueError, match="GHL_WEBHOOK_PUBLIC_KEY"):
        load_webhook_keys("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")
