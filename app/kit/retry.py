import math
import random

MAX_RETRY_AFTER_SECONDS = 3600.0


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about base, 2*base, 4*base ... capped, times 0.5-1.0."""
    exponent = min(max(attempt - 1, 0), 30)
    return min(cap, base * 2**exponent) * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header in seconds, within 0..1 h; None when absent, not a number, NaN or
    infinite (an HTTP date is not used by Cast or GHL and counts as absent)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
