"""`cast-ghl sandbox` as an evaluator runs it: no credentials, to the end, and from the wheel
installed into a fresh virtualenv with no checkout beside it (as in the Docker image, which has
no `tests/`).

The wheel is built by the project's build backend from a copy of what the Dockerfile copies
(`pyproject.toml`, `app/`). The virtualenv reuses the test environment's dependencies through a
`.pth` path line, which adds that directory to `sys.path` without running its `.pth` files: the
editable install of this checkout is not loaded there, so `app` can only come from the wheel.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT

pytestmark = pytest.mark.process  # a wheel, a virtualenv and the bridge's process from them

OFFLINE = ("--no-deps", "--no-index")
SHIPPED = ("app/devkit", "app/locations/templates", "app/locations/static")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    # setuptools, the build backend, is in the [test] extra: no download, no build isolation
    build = "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"
    _run([sys.executable, "-c", build, str(dist)], cwd=source)
    return next(dist.glob("cast_ghl_provider-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    dependencies = Path(httpx.__file__).resolve().parents[1]
    (Path(site.strip()) / "test-dependencies.pth").write_text(f"{dependencies}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *OFFLINE]
    _run([*pip, str(wheel)], cwd=venv)
    return venv / "bin"


def _environment() -> dict[str, str]:
    """The caller's environment without the bridge's settings or a PYTHONPATH to the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GHL_", "CAST_", "MONGO_", "INBOUND_", "ADMIN_", "PYTHON"))
    }


def _run(command: list[str], cwd: Path | None = None) -> str:
    """Runs outside the checkout (in `cwd`, else the command's own directory); returns stdout."""
    done = subprocess.run(
        command,
        cwd=cwd or Path(command[0]).parent,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"[-3000:]
    return done.stdout


@pytest.mark.parametrize("folder", SHIPPED)
def test_the_wheel_ships_every_file_of(folder: str, wheel: Path):
    files = {path.relative_to(ROOT).as_posix() for path in (ROOT / folder).glob("*.*")}

    assert files
    assert sorted(files - set(zipfile.ZipFile(wheel).namelist())) == []


def test_the_installed_wheel_imports_app_from_the_virtualenv_not_the_checkout(installed: Path):
    code = "import app.devkit.harness as module; print(module.__file__)"
    found = _run([str(installed / "python"), "-c", code])

    assert Path(found.strip()).is_relative_to(installed.parent)


def test_the_sandbox_walks_a_message_and_a_reply_through_and_shows_them_delivered(
    installed: Path, tmp_path: Path
):
    result = subprocess.run(
        [str(installed / "cast-ghl"), "sandbox"],
        cwd=tmp_path,  # no .env, no credentials, no checkout
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # what Cast saw: the SIM gateway, from the SIM number the reply then goes to
    assert "POST /api/v1/sim/send: SMS to 09171234567 from sender ID +639170000001" in out
    assert "GET /api/v1/sim/status/" in out
    assert "inbound SMS from 09171234567 to +639170000001" in out
    assert '{"status": "delivered"}' in out  # what GHL saw for the message
    assert "POST /conversations/messages/inbound" in out and "YES, see you at 3" in out
    assert "POST /conversations/" in out and '"conversationId": "conv-' in out
    assert 'bridge_messages_total{reason="confirmed",status="delivered"} 1.0' in out
    assert out.rstrip().endswith(
        "OK: outbound message delivered; the reply was added to the GHL conversation."
    )
