"""The one in-process cache (app/kit/ttl_cache.py): entries expire, and the map stays bounded."""

from app.kit.ttl_cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_found_until_its_ttl_has_passed():
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10.0, clock=clock)
    cache.put("a", 1)
    clock.now += 9.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None


def test_an_entry_put_with_its_own_ttl_expires_by_it():
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10.0, clock=clock)
    cache.put("short", 1, ttl=1.0)
    clock.now += 1.0
    assert "short" not in cache


def test_a_falsy_value_is_found_as_itself():
    cache: TTLCache[str, bool] = TTLCache(10.0)
    cache.put("clear", False)
    assert cache.get("clear") is False and "clear" in cache


def test_putting_again_renews_the_ttl():
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10.0, clock=clock)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == 2


def test_a_full_cache_drops_the_oldest_entry_only():
    cache: TTLCache[str, int] = TTLCache(10.0, max_entries=3)
    for key in ("a", "b", "c", "d"):
        cache.put(key, 1)
    assert len(cache) == 3
    assert [key in cache for key in ("a", "b", "c", "d")] == [False, True, True, True]


def test_a_popped_entry_is_gone():
    cache: TTLCache[str, int] = TTLCache(10.0)
    cache.put("a", 1)
    cache.pop("a")
    cache.pop("never-put")
    assert cache.get("a") is None
