import random


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about base, 2*base, 4*base ... capped, times 0.5-1.0."""
    exponent = min(max(attempt - 1, 0), 30)
    return min(cap, base * 2**exponent) * random.uniform(0.5, 1.0)
