"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples went.

    .venv/bin/python -m bench.profile_summary /tmp/ingest.txt [--top 25] [--cpu-us 420]

Stacks whose top frame is a thread waiting for work are left out. Prints the busy samples by
stage of the webhook path (verify, parse/validate, store, framework/middleware, and the
background worker), then the functions with the most samples on the stack (inclusive) and at the
top of the stack (self), as percentages of the busy samples, with file:line shortened to the
package path. With `--cpu-us` (the measured CPU per webhook) the stages are also in µs.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = {"Condition.wait", "Queue.get", "_worker", "select", "poll", "wait"}

# Stages of one webhook, by the frames on a sample's stack; the first stage that matches wins.
# Background: the outbound worker (claims, pacing, sends at R/s) and its store calls, which run
# during ingest but are not the webhook's cost.
# On the store's own thread a sample shows no caller; the webhook's inserts are `_insert_items`,
# every single-row write (`_changes_one`: saves, leases, seen ids) and quota use is the worker's.
_WORKER_STORE_CALLS = (
    "claim",
    "save",
    "extend_lease",
    "reserve_slot",
    "get_doc",
    "acquire_lease",
    "_changes_one",
    "take_quota",
)
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "background (worker)",
        re.compile(
            r"\((app/worker\.py|app/outbound/worker\.py|app/inbound/worker\.py|app/cast/|httpx/|"
            r"httpcore/)|^SQLiteStore\.(" + "|".join(_WORKER_STORE_CALLS) + r")\b|"
            r"^MongoStore\.(" + "|".join(_WORKER_STORE_CALLS) + r")\b"
        ),
    ),
    ("verify", re.compile(r"^(verify_webhook|_ed25519_verifies|crypto_sign_open) ")),
    ("parse/validate", re.compile(r"^(parse_payload|build_message) ")),
    (
        "store",
        re.compile(r"\((app/store/|app/queues\.py|app/outbound/repository\.py|pymongo/|bson/)"),
    ),
)
FRAMEWORK = "framework/middleware"
# Parts of the framework stage worth naming: a sample counts in the first part with a frame
# anywhere on its stack matching the first pattern, or its top frame matching the second (a
# middleware's own time, not that of the app it wraps).
FRAMEWORK_PARTS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    (
        "logging, request ids",
        re.compile(r"^(Logger|StreamHandler|JsonFormatter)\.|\(app/logs\.py\)"),
        re.compile(r"$^"),
    ),
    (
        "metrics (HTTP, counters)",
        re.compile(r"\((prometheus_client/|prometheus_fastapi_instrumentator/routing)"),
        re.compile(r"\((prometheus_fastapi_instrumentator/|app/metrics/http\.py)"),
    ),
)


def _short(frame: str) -> str:
    match = re.match(r"^(?P<func>.+?) \((?P<file>[^:]+)(?::(?P<line>\d+))?\)$", frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = "stdlib/" + path.rsplit("/", 1)[1]
    else:
        for package in ("/app/", "/bench/", "/tests/"):
            if package in path:
                path = package.lstrip("/") + path.split(package, 1)[1]
                break
    return f"{match['func']} ({path})"


def _busy_stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames root first, samples) of every stack that is not a thread waiting for work."""
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        frames = [_short(f) for f in stack.split(";") if f]
        if frames and frames[-1].split(" (")[0] in IDLE:
            continue  # a thread waiting for work (thread pools), not CPU
        stacks.append((frames, int(count_text)))
    return stacks


def _first_match(frames: list[str], rules: tuple[tuple[str, re.Pattern[str]], ...]) -> str | None:
    for name, pattern in rules:
        if any(pattern.search(frame) for frame in frames):
            return name
    return None


def _framework_part(frames: list[str]) -> str | None:
    for name, anywhere, leaf in FRAMEWORK_PARTS:
        if any(anywhere.search(frame) for frame in frames) or (frames and leaf.search(frames[-1])):
            return name
    return None


def stage_shares(path: Path) -> dict[str, float]:
    """Share of the busy samples per stage (and per named part of the framework stage, keyed
    `framework/middleware: <part>`); the stages add up to 1."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, count in _busy_stacks(path):
        total += count
        stage = _first_match(frames, STAGES) or FRAMEWORK
        counts[stage] += count
        if stage == FRAMEWORK and (part := _framework_part(frames)):
            counts[f"{FRAMEWORK}: {part}"] += count
    names = [name for name, _ in STAGES[1:]] + [FRAMEWORK]
    names += [f"{FRAMEWORK}: {part}" for part, _, _ in FRAMEWORK_PARTS] + [STAGES[0][0]]
    return {name: counts[name] / total if total else 0.0 for name in names}


def stage_lines(shares: dict[str, float], cpu_us: float | None) -> list[str]:
    """One line per stage: its share of the busy samples and, given the CPU per webhook, µs."""
    lines = []
    for name, share in shares.items():
        label = f"  of which {name.split(': ', 1)[1]}" if ": " in name else name
        us = f"{share * cpu_us:6.0f} us" if cpu_us is not None else ""
        lines.append(f"  {label:<36} {us}  {100 * share:5.1f}%")
    return lines


def summarise(path: Path, top: int, cpu_us: float | None = None) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for frames, count in _busy_stacks(path):
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples", "", "by stage:", *stage_lines(stage_shares(path), cpu_us)]
    lines += ["", "inclusive (on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self (top of the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu-us", type=float, default=None, help="measured CPU per webhook")
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.cpu_us))


if __name__ == "__main__":
    main()
