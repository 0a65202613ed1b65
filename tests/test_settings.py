"""Settings: required and malformed variables stop the start with one line each, naming them."""

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from app.config import SettingsError, load_settings
from tests.support import ROOT

REQUIRED = {
    "GHL_CLIENT_ID": "id",
    "GHL_CLIENT_SECRET": "s3cret-value",
    "CAST_API_KEY": "cast_" + "ab" * 32,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [*REQUIRED, "MONGO_URI", "TOKEN_ENCRYPTION_KEY", "PORT", "CAST_SENDER_ID"]:
        monkeypatch.delenv(name, raising=False)


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in {**REQUIRED, **values}.items():
        monkeypatch.setenv(name, value)


def test_defaults_apply_when_only_the_required_variables_are_set(monkeypatch):
    set_env(monkeypatch)
    settings = load_settings()
    assert settings.port == 3002
    assert str(settings.ghl_api_url) == "https://services.leadconnectorhq.com/"
    assert settings.redirect_uri == "http://localhost:3002/oauth/callback"
    assert not settings.uses_mongo


def test_each_missing_required_variable_is_named(monkeypatch):
    with pytest.raises(SettingsError) as caught:
        load_settings()
    names = {line.split(":")[0] for line in caught.value.lines}
    assert names == {"GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "CAST_API_KEY"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "not-a-port", "PORT"),
        ("PORT", "70000", "PORT"),
        ("CAST_API_KEY", "abc123", "CAST_API_KEY"),
        ("MONGO_URI", "postgres://x", "MONGO_URI"),
        ("TOKEN_ENCRYPTION_KEY", "too-short", "TOKEN_ENCRYPTION_KEY"),
        ("CAST_SENDER_ID", "WAY-TOO-LONG-SENDER", "CAST_SENDER_ID"),
        ("BASE_URL", "not a url", "BASE_URL"),
    ],
)
def test_a_malformed_variable_is_named(monkeypatch, variable, value, expected):
    set_env(monkeypatch, **{variable: value})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split(":")[0] for line in caught.value.lines] == [expected]


def test_mongodb_requires_a_token_encryption_key(monkeypatch):
    set_env(monkeypatch, MONGO_URI="mongodb://127.0.0.1:27017/x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines[0].startswith("TOKEN_ENCRYPTION_KEY")
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    assert load_settings().uses_mongo


def test_a_dotenv_file_is_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        "GHL_CLIENT_ID=from-file\nGHL_CLIENT_SECRET=x\nCAST_API_KEY=cast_test_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n"
    )
    assert load_settings().ghl_client_id == "from-file"


@pytest.mark.process  # `python -m app`'s exit code
def test_the_process_exits_non_zero_naming_bad_variables_without_printing_secrets(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "GHL_CLIENT_SECRET": "s3cret-value",
        "CAST_API_KEY": "wrong-format-secret",
        "PORT": "x",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(line.strip().startswith("GHL_CLIENT_ID:") for line in lines)
    assert any(line.strip().startswith("CAST_API_KEY:") for line in lines)
    assert any(line.strip().startswith("PORT:") for line in lines)
    assert "s3cret-value" not in result.stderr + result.stdout
    assert "wrong-format-secret" not in result.stderr + result.stdout


def test_settings_frame_origins_are_read_comma_or_space_separated(monkeypatch):
    set_env(
        monkeypatch,
        SETTINGS_FRAME_ORIGINS="https://App.MyAgency.com, https://*.white.example:8443 "
        "https://app.myagency.com/",
    )
    assert load_settings().settings_frame_origins == (
        "https://app.myagency.com",
        "https://*.white.example:8443",
    )


@pytest.mark.parametrize(
    "value",
    ["app.example.com", "https://a.example/path", "https://a.example;script-src *", "*", "'self'"],
)
def test_a_settings_frame_origin_that_is_not_an_origin_stops_the_start(monkeypatch, value):
    set_env(monkeypatch, SETTINGS_FRAME_ORIGINS=value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split(":")[0] for line in caught.value.lines] == ["SETTINGS_FRAME_ORIGINS"]
