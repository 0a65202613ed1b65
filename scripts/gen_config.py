"""Writes `.env.example` and docs/configuration.md from the `Settings` fields (app/config.py).

The fields are the one source of the configuration: their descriptions, examples and sections
(json_schema_extra) become both files. Run from the repository root:

    .venv/bin/python -m scripts.gen_config           # regenerate both files
    .venv/bin/python -m scripts.gen_config --check   # exit 1 when a committed file differs

tests/test_shipping.py fails when the committed files differ from what this writes.
"""

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt, MaxLen
from pydantic import AnyHttpUrl, SecretStr
from pydantic.fields import FieldInfo

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python -m scripts.gen_config"
_WIDTH = 96
_RULE = "# " + "=" * _WIDTH
_LINK = re.compile(r"\[([^\]]+)\]\(([^)#]+)(#[^)]*)?\)")
_ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=")


@dataclass(frozen=True)
class Setting:
    env: str
    info: FieldInfo

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def default(self) -> object:
        return None if self.required else self.info.get_default(call_default_factory=True)

    @property
    def extra(self) -> dict[str, object]:
        extra = self.info.json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @property
    def env_example(self) -> str | None:
        """The value `.env.example` sets on an active line; None: the line shows the default."""
        value = self.extra.get("env_example")
        return None if value is None else str(value)

    @property
    def examples(self) -> list[str]:
        return [str(example) for example in self.info.examples or []]

    @property
    def text(self) -> str:
        """The description, then the allowed range the field's constraints give."""
        limits = _limits(self.info)
        return (
            f"{self.info.description} Allowed: {limits}." if limits else str(self.info.description)
        )


@dataclass
class Section:
    title: str
    note: str
    settings: list[Setting] = field(default_factory=list)


def sections() -> list[Section]:
    """Settings in field order, grouped by the `section` that opens each group."""
    found: list[Section] = []
    for name, info in Settings.model_fields.items():
        setting = Setting(name.upper(), info)
        _check(setting)
        title = setting.extra.get("section")
        if title is not None or not found:
            found.append(
                Section(str(title or "Settings"), str(setting.extra.get("section_note", "")))
            )
        found[-1].settings.append(setting)
    return found


def _check(setting: Setting) -> None:
    if not setting.info.description:
        raise ValueError(f"{setting.env}: give the field a description (app/config.py)")
    if setting.required and setting.env_example is None:
        raise ValueError(f"{setting.env}: a required setting needs an env_example placeholder")
    if "SecretStr" in repr(setting.info.annotation) and setting.default is not None:
        raise ValueError(f"{setting.env}: a secret must not have a default value")


def _limits(info: FieldInfo) -> str:
    low = high = ""
    for rule in info.metadata:
        match rule:
            case Ge(ge=value) if value != 0:
                low = f"at least {_env_value(value)}"
            case Gt(gt=value) if value != 0:
                low = f"more than {_env_value(value)}"
            case Le(le=value):
                high = f"at most {_env_value(value)}"
            case Lt(lt=value):
                high = f"less than {_env_value(value)}"
            case MaxLen(max_length=value):
                high = f"at most {value} characters"
    if low.startswith("at least") and high.startswith("at most") and "characters" not in high:
        return f"{low.removeprefix('at least ')} to {high.removeprefix('at most ')}"
    return ", ".join(part for part in (low, high) if part)


def _env_value(value: object) -> str:
    """A value as it is written in `.env`."""
    match value:
        case None:
            return ""
        case bool():
            return "true" if value else "false"
        case float() if value.is_integer():
            return str(int(value))
        case tuple() | list():
            return ",".join(str(item) for item in value)
        case dict():
            return json.dumps(value, separators=(",", ":")) if value else ""
        case Path():
            return str(value) if value.is_absolute() else f"./{value}"
        case AnyHttpUrl() if value.path == "/":
            return str(value).removesuffix("/")
        case SecretStr():
            raise ValueError("a secret has no default to show")
        case _:
            return str(value)


# .env.example -----------------------------------------------------------------------------------
_ENV_HEADER = """\
# cast-ghl-provider configuration
#
# Copy to .env and edit:   cp .env.example .env
# As shipped, this file is enough for a local trial run (embedded SQLite, placeholder
# credentials): the service starts, but GHL and Cast calls fail until real values are set.
#
# Every variable maps to a field of app/config.py (env name = field name in upper case, matched
# case-insensitively). Real environment variables win over this file.
# A line that is commented out keeps the built-in default shown on it.
# Format rules that keep this file working with pydantic-settings, `docker compose` env_file AND
# `docker run --env-file`: one KEY=value per line, no quotes, no comments after a value.
# Never commit the real .env (it is in .gitignore and .dockerignore).
#
# Generated from the descriptions in app/config.py by `{command}`:
# edit them there. The same reference with links: docs/configuration.md.
"""


def _plain(text: str) -> str:
    """Markdown made readable as a comment: links name their file, no emphasis."""
    text = _LINK.sub(lambda link: f"{link[1]} (docs/{link[2]})", text)
    return text.replace("**", "")


def _comment(text: str) -> list[str]:
    lines = textwrap.wrap(
        _plain(text), width=_WIDTH, break_long_words=False, break_on_hyphens=False
    )
    for line in lines:
        if _ASSIGNMENT.match(line):  # the tests would read it as a setting's line
            raise ValueError(f"a description line must not start like an assignment: {line}")
    return [f"# {line}" for line in lines]


def _env_setting(setting: Setting) -> list[str]:
    lines = _comment(setting.text)
    lines += [f"#   {setting.env}={example}" for example in setting.examples]
    if setting.env_example is not None:
        lines.append(f"{setting.env}={setting.env_example}")
    else:
        lines.append(f"# {setting.env}={_env_value(setting.default)}")
    return lines


def render_env_example() -> str:
    lines = _ENV_HEADER.format(command=COMMAND).splitlines()
    for section in sections():
        lines += ["", _RULE, f"# {_plain(section.title)}"]
        lines += _comment(section.note) if section.note else []
        lines.append(_RULE)
        for setting in section.settings:
            lines += ["", *_env_setting(setting)]
    return "\n".join(lines) + "\n"


# docs/configuration.md --------------------------------------------------------------------------
_DOC_HEADER = """\
# Configuration

<!-- Generated from app/config.py by `{command}`:
     edit the descriptions there, then run it. -->

Settings come from environment variables or `.env` (real environment variables win over `.env`);
[`.env.example`](../.env.example) lists every one with its default and an example (`cp
.env.example .env`). Each variable is a field of `Settings` in [app/config.py](../app/config.py):
the name in upper case, matched case-insensitively. A missing or malformed required setting stops
the process at start with exit code 2 and one line per bad variable. Secrets are never logged.

`.env` format rules, so that the file works with pydantic-settings, `docker compose` env_file and
`docker run --env-file` alike: one `KEY=value` per line, no quotes, no comments after a value.
Never commit the real `.env` (it is in `.gitignore` and `.dockerignore`).

This page and `.env.example` are generated from the fields' descriptions: after changing a
setting in app/config.py, run `{command}`
(a test fails while they differ).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _doc_default(setting: Setting) -> str:
    if setting.required:
        return "**required**"
    value = _env_value(setting.default)
    return f"`{value}`" if value else "unset"


def _doc_row(setting: Setting) -> str:
    what = setting.text
    what += "".join(f" Example: `{setting.env}={example}`." for example in setting.examples)
    return f"| `{setting.env}` | {_cell(_doc_default(setting))} | {_cell(what)} |"


def render_configuration_doc() -> str:
    lines = _DOC_HEADER.format(command=COMMAND).splitlines()
    for section in sections():
        lines += ["", f"## {section.title}", ""]
        lines += [section.note, ""] if section.note else []
        lines += ["| variable | default | what |", "|---|---|---|"]
        lines += [_doc_row(setting) for setting in section.settings]
    return "\n".join(lines) + "\n"


GENERATED: dict[str, Callable[[], str]] = {
    ".env.example": render_env_example,
    "docs/configuration.md": render_configuration_doc,
}


def stale_files(root: Path = ROOT) -> list[str]:
    """The generated files whose committed text differs from what the settings give."""
    return [
        name
        for name, render in GENERATED.items()
        if not (root / name).exists() or (root / name).read_text(encoding="utf-8") != render()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"{name} differs from app/config.py: run {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for name, render in GENERATED.items():
        (ROOT / name).write_text(render(), encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
