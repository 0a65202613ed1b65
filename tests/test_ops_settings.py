"""ADMIN_API_KEY and METRICS_BEARER_TOKEN: optional, blank is unset, the admin key stands alone."""

import pytest

from app.config import SettingsError, load_settings
from app.devkit.harness import CAST_KEY

REQUIRED = {"ghl_client_id": "id", "ghl_client_secret": "secret", "cast_api_key": CAST_KEY}


def test_both_are_off_by_default_and_blank_means_off():
    assert load_settings(**REQUIRED).admin_api_key is None
    blank = load_settings(**REQUIRED, admin_api_key=" ", metrics_bearer_token="")
    assert blank.admin_api_key is None and blank.metrics_bearer_token is None


def test_a_short_admin_key_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as refused:
        load_settings(**REQUIRED, admin_api_key="short-key")
    (line,) = refused.value.lines
    assert line.startswith("ADMIN_API_KEY: must be at least 16 characters")
    assert "short-key" not in line


def test_the_admin_key_may_not_be_the_inbound_gateways_key():
    key = "the-same-key-for-both-0123"
    with pytest.raises(SettingsError) as refused:
        load_settings(**REQUIRED, admin_api_key=key, inbound_api_key=key)
    assert "ADMIN_API_KEY: must differ from INBOUND_API_KEY" in refused.value.lines[0]
    assert key not in refused.value.lines[0]
