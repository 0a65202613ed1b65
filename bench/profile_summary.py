"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples went.

    .venv/bin/python -m bench.profile_summary /tmp/ingest.txt [--top 25]

Stacks whose top frame is a thread waiting for work are left out. Prints the functions with the
most samples on the stack (inclusive) and at the top of the stack (self), as percentages of the
busy samples, with file:line shortened to the package path.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = {"Condition.wait", "Queue.get", "_worker", "select", "poll", "wait"}


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


def summarise(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if frames and frames[-1].split(" (")[0] in IDLE:
            continue  # a thread waiting for work (thread pools), not CPU
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive (on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self (top of the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.path, args.top))


if __name__ == "__main__":
    main()
