"""In-process counters (what happened since start); exported by /metrics."""

from collections import Counter


class Counters:
    def __init__(self) -> None:
        self._values: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        self._values[name] += amount

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._values.items()))
