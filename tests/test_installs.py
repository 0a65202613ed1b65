"""Installs come from the lock files only, and only when something changed (scripts/_venv.sh).

`ensure_venv` is run against a stand-in Python that records what it is asked to do: no package
index, no real virtualenv."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PINNED = re.compile(r"^([a-z0-9_.-]+)==(\S+) \\$", re.MULTILINE)

RECORDING_PYTHON = """#!/usr/bin/env bash
echo "$*" >>"$CALLS"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
"""


def pins(lock: str) -> dict[str, str]:
    return dict(PINNED.findall((ROOT / lock).read_text()))


def direct_dependencies(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(name) for name in names]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what `ensure_venv` reads, with the recording Python as $PYTHON."""
    for name in ("pyproject.toml", "requirements.lock", "requirements-test.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    python = tmp_path / "python3.13"
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    return tmp_path


def ensure_venv(checkout: Path, extras: str) -> list[str]:
    """What `ensure_venv extras` asked Python to do."""
    calls = checkout / "calls.txt"
    calls.write_text("")
    subprocess.run(
        ["bash", "-c", 'source scripts/_venv.sh && ensure_venv "$1"', "_", extras],
        cwd=checkout,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(checkout / "python3.13"), "CALLS": str(calls)},
        check=True,
    )
    return [line.replace(str(checkout) + "/", "") for line in calls.read_text().splitlines()]


def without_version_checks(calls: list[str]) -> list[str]:
    return [call for call in calls if not call.startswith("-c ")]


@pytest.mark.parametrize(
    ("extras", "lock"), [("", "requirements.lock"), ("[test]", "requirements-test.lock")]
)
def test_a_first_install_takes_exactly_the_lock_checked_by_hashes(checkout, extras, lock):
    assert without_version_checks(ensure_venv(checkout, extras)) == [
        "-m venv .venv",
        f"-m pip install --quiet --require-hashes -r {lock}",
        "-m pip install --quiet --no-deps -e .",
    ]


def test_a_restart_with_nothing_changed_installs_nothing(checkout):
    ensure_venv(checkout, "")
    assert without_version_checks(ensure_venv(checkout, "")) == []


def test_the_service_starts_without_installing_after_the_test_set_was_installed(checkout):
    ensure_venv(checkout, "[test]")
    assert without_version_checks(ensure_venv(checkout, "")) == []


def test_the_test_set_is_installed_after_the_service_set(checkout):
    ensure_venv(checkout, "")
    assert "-m venv .venv" in ensure_venv(checkout, "[test]")


@pytest.mark.parametrize("changed", ["requirements.lock", "pyproject.toml"])
def test_a_changed_lock_or_pyproject_rebuilds_the_venv(checkout, changed):
    ensure_venv(checkout, "")
    with (checkout / changed).open("a") as file:
        file.write("\n# changed\n")
    assert without_version_checks(ensure_venv(checkout, ""))[0] == "-m venv .venv"


@pytest.mark.parametrize("extra", [None, "test"])
def test_every_direct_dependency_is_locked_within_its_range_with_hashes(extra):
    lock = "requirements-test.lock" if extra else "requirements.lock"
    locked = pins(lock)
    for requirement in direct_dependencies(extra):
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{name} is not in {lock}"
        assert requirement.specifier.contains(locked[name]), (name, locked[name])
        assert not requirement.specifier.contains("999"), f"{name} has no upper bound"
    blocks = (ROOT / lock).read_text().split("==")[1:]
    assert all("--hash=sha256:" in block for block in blocks)


def test_the_test_lock_holds_the_service_packages_at_the_same_versions():
    test_pins = pins("requirements-test.lock")
    assert {name: test_pins.get(name) for name in pins("requirements.lock")} == pins(
        "requirements.lock"
    )
