"""What ships, checked statically (no Docker engine runs here): the compose file, the Dockerfile,
the Woodpecker pipeline, `.env.example`, the configuration reference and the documentation.

`.env.example` and docs/configuration.md are generated from the `Settings` fields
(`.venv/bin/python -m scripts.gen_config`): the tests fail as soon as a setting is added to
`app/config.py` without a description, when the committed files differ from what the settings
give, or when a documented default drifts from the code. README.md and docs/*.md link only to
files and headings that exist.
"""

import json
import re
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Match

from app.config import Settings, load_settings
from app.main import create_app
from scripts.gen_config import COMMAND, stale_files

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
REQUIRED = {
    "GHL_CLIENT_ID": "id-placeholder",
    "GHL_CLIENT_SECRET": "s3cret-value",
    "CAST_API_KEY": "cast_" + "ab" * 32,
}


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the test process' environment or a stray .env leaks into Settings."""
    monkeypatch.chdir(tmp_path)
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


# docker-compose.yaml ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(_read("docker-compose.yaml"))


def _bridges(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("bridge")}


def test_compose_names_the_bridge_and_mongo_services(compose):
    assert {"bridge", "mongo"} <= set(compose["services"])


def test_compose_runs_mongo_7_on_a_named_volume(compose):
    mongo = compose["services"]["mongo"]
    assert mongo["image"] == "mongo:7"
    sources = {str(volume).split(":", 1)[0] for volume in mongo["volumes"]}
    assert sources & set(compose.get("volumes") or {}), "mongo's data must be on a named volume"
    assert any(str(volume).endswith(":/data/db") for volume in mongo["volumes"])


def test_compose_does_not_publish_mongo_on_the_host(compose):
    mongo = compose["services"]["mongo"]
    assert "ports" not in mongo
    assert mongo.get("network_mode") != "host"


def test_compose_mongo_has_a_healthcheck(compose):
    test = compose["services"]["mongo"]["healthcheck"]["test"]
    assert "ping" in " ".join(test if isinstance(test, list) else [test])


def test_compose_bridge_waits_for_a_healthy_mongo(compose):
    for name, bridge in _bridges(compose).items():
        assert bridge["depends_on"]["mongo"]["condition"] == "service_healthy", name


def test_compose_services_restart_unless_stopped(compose):
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name


def test_compose_bridge_reads_env_file_and_uses_the_mongo_service(compose):
    for name, bridge in _bridges(compose).items():
        env_file = bridge["env_file"]
        assert ".env" in ([env_file] if isinstance(env_file, str) else env_file), name
        assert bridge["environment"]["MONGO_URI"].startswith("mongodb://mongo:27017/"), name


def test_compose_bridge_port_is_bound_to_loopback_for_the_reverse_proxy(compose):
    for name, bridge in _bridges(compose).items():
        for port in bridge.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_stop_grace_period_outlasts_the_graceful_shutdown(compose):
    """Open requests, then in-flight sends, each up to SHUTDOWN_TIMEOUT_SECONDS (default 20 s)."""
    default = Settings.model_fields["shutdown_timeout_seconds"].default
    for name, bridge in _bridges(compose).items():
        grace = re.fullmatch(r"(\d+)s", str(bridge["stop_grace_period"]))
        assert grace and int(grace.group(1)) > 2 * default, name


# Dockerfile -------------------------------------------------------------------------------------
def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each starting with its FROM (image ARGs substituted)."""
    args: dict[str, str] = {}
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(_read("Dockerfile")):
        if keyword == "ARG" and not found and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], rest)
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_dockerfile_is_multi_stage_on_python_3_13_slim(stages):
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0][1].split()[0] == "python:3.13-slim"


def test_dockerfile_installs_dependencies_before_copying_the_code(stages):
    """A code edit reuses the dependency layer: the lock file is copied and installed first,
    every package checked against its hashes."""
    builder = stages[0]
    copies = [rest for keyword, rest in builder if keyword == "COPY"]
    assert copies[0].split()[0] == "requirements.lock"
    first_code_copy = next(
        i for i, (k, rest) in enumerate(builder) if k == "COPY" and "app" in rest
    )
    installs = [i for i, (k, rest) in enumerate(builder) if k == "RUN" and "pip install" in rest]
    assert installs and installs[0] < first_code_copy
    assert "--require-hashes -r requirements.lock" in builder[installs[0]][1]


def test_dockerfile_final_stage_runs_as_a_non_root_user(stages):
    users = [rest for keyword, rest in stages[-1] if keyword == "USER"]
    assert users, "the final stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_exposes_3002_with_a_healthcheck_on_healthz(stages):
    final = stages[-1]
    assert ("EXPOSE", "3002") in final
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert healthchecks and "/healthz" in healthchecks[-1]


def test_dockerfile_starts_the_app_as_pid_1_so_sigterm_reaches_it(stages):
    """Exec form: a shell-form CMD makes /bin/sh PID 1, which does not pass SIGTERM on."""
    cmd = [rest for keyword, rest in stages[-1] if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["python", "-m", "app"]
    stopsignals = [rest for keyword, rest in stages[-1] if keyword == "STOPSIGNAL"]
    assert stopsignals in ([], ["SIGTERM"])


def test_dockerfile_installs_no_test_dependencies(stages):
    pyproject = _read("pyproject.toml")
    test_extra = re.search(r"(?ms)^test = \[(.*?)^\]", pyproject)
    assert test_extra
    test_deps = {
        re.split(r"[<>=\[ ]", dep.strip().strip('",'))[0].lower()
        for dep in test_extra.group(1).splitlines()
        if dep.strip()
    }
    for stage in stages:
        for keyword, rest in stage:
            if keyword == "RUN":
                assert "[test]" not in rest
                words = {word.lower() for word in shlex.split(rest.replace(";", " "))}
                assert not words & test_deps, rest


def test_dockerfile_final_stage_has_no_build_step(stages):
    """Only the finished virtualenv is copied in: no pip, compiler or source tree in the image."""
    final = stages[-1]
    for keyword, rest in final:
        if keyword == "RUN":
            assert "pip" not in rest and "apt-get" not in rest, rest
        if keyword == "COPY":
            assert rest.startswith("--from="), rest


def test_dockerignore_keeps_secrets_and_local_data_out_of_the_image():
    patterns = {line.strip() for line in _read(".dockerignore").splitlines()}
    assert {".env", ".git", "data/", "tests/"} <= patterns


def test_dockerignore_keeps_the_dev_kit_the_sandbox_runs_on_in_the_image():
    patterns = [
        line.strip().rstrip("/")
        for line in _read(".dockerignore").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for path in ("app", "app/devkit", "app/devkit/fake_cast.py", "app/devkit/harness.py"):
        assert not [pattern for pattern in patterns if fnmatch(path, pattern)], path


# The dev kit --------------------------------------------------------------------------------------
def test_the_service_never_loads_the_dev_kit():
    code = "import sys, app.__main__; print(sorted(m for m in sys.modules if 'devkit' in m))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


# .woodpecker.yml --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return yaml.safe_load(_read(".woodpecker.yml"))


def _named(section: Any) -> dict[str, dict[str, Any]]:
    """Woodpecker accepts steps/services as a list of {name: ...} or a mapping by name."""
    if isinstance(section, dict):
        return section
    return {entry["name"]: entry for entry in section}


def _runs_on_main_push(step: dict[str, Any]) -> bool:
    conditions = step.get("when") or []
    for condition in conditions if isinstance(conditions, list) else [conditions]:
        events = condition.get("event", [])
        events = [events] if isinstance(events, str) else events
        if "push" in events and condition.get("branch") == "main":
            return True
    return False


def test_pipeline_lints_with_ruff(pipeline):
    commands = " ; ".join(_named(pipeline["steps"])["lint"]["commands"])
    assert "ruff check" in commands and "ruff format --check" in commands


@pytest.mark.parametrize("step", ["lint", "test"])
def test_pipeline_installs_the_locked_test_set_checked_by_hashes(pipeline, step):
    commands = _named(pipeline["steps"])[step]["commands"]
    installs = [command for command in commands if "pip install" in command]
    assert installs[0].endswith("--require-hashes -r requirements-test.lock")
    assert all("-r " in command or "--no-deps" in command for command in installs)


def test_pipeline_tests_against_a_real_mongo_7_service(pipeline):
    services = _named(pipeline["services"])
    mongo = [name for name, svc in services.items() if svc["image"] == "mongo:7"]
    assert mongo
    test = _named(pipeline["steps"])["test"]
    assert any("pytest" in command for command in test["commands"])
    assert test["environment"]["TEST_MONGO_URI"].startswith(f"mongodb://{mongo[0]}:27017")


def test_pipeline_builds_and_tags_the_image_on_main(pipeline):
    steps = _named(pipeline["steps"])
    builds = {
        name: step for name, step in steps.items() if "docker" in step.get("image", "").lower()
    }
    assert builds, "no image build step"
    on_main = [step for step in builds.values() if _runs_on_main_push(step)]
    assert on_main, "no build step runs on pushes to main"
    settings = on_main[0]["settings"]
    assert settings.get("tags") and not settings.get("dry_run")
    assert settings.get("dockerfile", "Dockerfile") == "Dockerfile"


# .env.example -----------------------------------------------------------------------------------
_DOCUMENTED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_DISABLED = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)  # "keeps the default shown"
_ACTIVE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def test_env_example_documents_every_setting():
    documented = set(_DOCUMENTED.findall(_read(".env.example")))
    missing = sorted(SETTING_NAMES - documented)
    assert not missing, f"settings missing from .env.example: {missing}"


def test_env_example_names_only_real_settings():
    documented = set(_DOCUMENTED.findall(_read(".env.example")))
    unknown = sorted(documented - SETTING_NAMES)
    assert not unknown, f".env.example names variables Settings does not read: {unknown}"


def test_env_example_commented_lines_show_the_builtin_default(clean_env):
    """`# NAME=value` means "this is the default": it must be what the code does."""
    defaults = load_settings(**REQUIRED)
    for name, value in _DISABLED.findall(_read(".env.example")):
        field = name.lower()
        if Settings.model_fields[field].default is None:
            continue  # no default to drift from: the line shows an example
        shown = load_settings(**{**REQUIRED, field: value})
        assert getattr(shown, field) == getattr(defaults, field), f"{name}={value}"


def test_env_example_as_shipped_starts_a_local_trial(clean_env):
    settings = Settings(_env_file=str(ROOT / ".env.example"))  # type: ignore[call-arg]
    assert not settings.uses_mongo


def test_env_example_contains_no_real_secret():
    secret_fields = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in repr(field.annotation)
    }
    for name, value in _ACTIVE.findall(_read(".env.example")):
        if name in secret_fields and value:
            placeholder = "placeholder" in value or value.startswith("replace-with")
            assert placeholder or set(value.rsplit("_", 1)[-1]) == {"0"}, name


def test_every_setting_has_a_description():
    undocumented = sorted(
        name.upper() for name, field in Settings.model_fields.items() if not field.description
    )
    assert not undocumented, f"settings without a description in app/config.py: {undocumented}"


def test_no_secret_setting_has_a_default_value():
    for name, field in Settings.model_fields.items():
        if "SecretStr" in repr(field.annotation):
            assert field.is_required() or field.default is None, name.upper()


def test_env_example_and_the_configuration_reference_are_generated_from_the_settings():
    stale = stale_files(ROOT)
    assert not stale, f"{', '.join(stale)} differ from app/config.py: run {COMMAND}"


def test_configuration_reference_lists_every_setting():
    rows = [line for line in _read("docs/configuration.md").splitlines() if line.startswith("| `")]
    listed = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    missing = sorted(SETTING_NAMES - listed)
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    unknown = sorted(listed - SETTING_NAMES)
    assert not unknown, f"docs/configuration.md names unknown variables: {unknown}"


# README and docs/ -------------------------------------------------------------------------------
def _prose(path: Path) -> str:
    """The text of a Markdown file without its fenced code blocks."""
    kept, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def _section(title: str) -> str:
    """A `## title` section of README.md or of a docs/*.md file, wherever it now lives."""
    for path in DOCUMENTS:
        match = re.search(rf"(?ms)^## {re.escape(title)}\b.*?(?=^## |\Z)", _prose(path))
        if match:
            return match.group(0)
    raise AssertionError(f"neither README.md nor docs/ has a section '{title}'")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a file's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", _prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        number = 0
        while (f"{slug}-{number}" if number else slug) in anchors:
            number += 1
        anchors.add(f"{slug}-{number}" if number else slug)
    return anchors


def _relative_links(path: Path) -> list[str]:
    text = _prose(path)
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img [^>]*src="([^"]+)"', text)
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_readme_fits_on_a_few_screens():
    assert len(_read("README.md").splitlines()) <= 250


def test_readme_keeps_the_two_commands_ci_and_users_run():
    readme = _read("README.md")
    assert "bash scripts/serve.sh" in readme and "bash scripts/test.sh" in readme


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    broken = []
    for link in _relative_links(path):
        file_part, _, anchor = link.partition("#")
        target = (path.parent / file_part).resolve() if file_part else path
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_operator_guide_sections_exist():
    for title in (
        "Deploying with Docker Compose behind TLS",
        "Registering the GHL Marketplace app",
        "Switching a sub-account to Cast SMS",
        "Troubleshooting by symptom",
        "Known GHL limitations",
        "Backups",
        "Running several replicas",
    ):
        _section(title)


def test_documented_urls_to_register_are_served(clean_env):
    """Every `{BASE_URL}/…` path the docs tell an operator to paste into GHL is a real route."""
    app = create_app(load_settings(**REQUIRED))

    def served(path: str) -> bool:
        scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
        return any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes)

    docs = "\n".join(path.read_text(encoding="utf-8") for path in DOCUMENTS)
    paths = set(re.findall(r"\{BASE_URL\}(/[A-Za-z0-9/_.-]*)", docs))
    assert "/webhooks/ghl/outbound" in paths and "/webhooks/ghl/app" in paths
    unserved = sorted(path for path in paths if not served(path))
    assert not unserved, f"the docs name paths the app does not serve: {unserved}"


def test_failure_codes_table_covers_the_codes_the_code_produces():
    """Every literal failure code the workers and services hand to GHL is explained."""
    table = _section("Troubleshooting by symptom")
    produced: set[str] = set()
    for path in [*ROOT.glob("app/outbound/*.py"), ROOT / "app/oauth/tokens.py"]:
        source = path.read_text(encoding="utf-8")
        produced |= set(re.findall(r'"failed",\s*"([A-Z][A-Z_]+)"', source))
        produced |= set(re.findall(r'code="([A-Z][A-Z_]+)"', source))
        produced |= set(re.findall(r' or "([A-Z][A-Z_]+)"', source))
        produced |= set(re.findall(r'"([A-Z][A-Z_]+)": "[^"]*\(\1\)', source))  # carrier codes
    assert {"INVALID_PHONE", "REAUTHORIZATION_NEEDED", "REJECTD"} <= produced
    missing = sorted(code for code in produced if f"`{code}`" not in table)
    assert not missing, f"failure codes not explained in docs/troubleshooting.md: {missing}"


def test_documented_commands_run_python3_which_debian_has():
    bare = re.compile(r"(?<![\w/.-])python(?= -[cm] )")
    found = [
        f"{doc.name}: {line.strip()}"
        for doc in DOCUMENTS
        for line in doc.read_text().splitlines()
        if bare.search(line)
    ]
    assert not found, found


def test_git_ignores_the_backups_folder():
    assert "backups/" in (ROOT / ".gitignore").read_text().splitlines()
