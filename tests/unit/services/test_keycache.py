"""The key cache: a principal is believed for its time, forgotten when its key is revoked."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rgrid import domain
from rgrid.services.keycache import KeyCache

CREATED = datetime(2026, 11, 30, tzinfo=UTC)


def principal(key_id: str) -> domain.Principal:
    account = domain.Account(id="acct_1", name="a", is_admin=False, created_at=CREATED)
    return domain.Principal(account=account, key_id=key_id)


def test_a_key_is_believed_for_its_time_only() -> None:
    cache = KeyCache(ttl_s=0.2)
    cache.remember("digest-a", principal("key_a"), time.monotonic())
    assert cache.get("digest-a") == principal("key_a")
    assert cache.get("digest-b") is None
    time.sleep(0.25)
    assert cache.get("digest-a") is None


def test_a_revoked_key_is_forgotten_and_the_others_kept() -> None:
    cache = KeyCache()
    cache.remember("digest-a", principal("key_a"), time.monotonic())
    cache.remember("digest-b", principal("key_b"), time.monotonic())
    cache.forget_key("key_a")
    assert cache.get("digest-a") is None
    assert cache.get("digest-b") == principal("key_b")


def test_a_full_cache_drops_the_expired_first_then_starts_over() -> None:
    cache = KeyCache(ttl_s=60, size=2)
    cache.remember("one", principal("key_1"), time.monotonic())
    cache.remember("two", principal("key_2"), time.monotonic())
    cache.remember(
        "three", principal("key_3"), time.monotonic()
    )  # none expired: starts over with this one
    assert [cache.get(d) is not None for d in ("one", "two", "three")] == [False, False, True]


def test_a_lookup_that_began_before_a_revocation_does_not_put_the_key_back() -> None:
    """A request read its key as valid, then the key was revoked through this process before
    the request's lookup ended: the key must not be believed for another two seconds."""
    cache = KeyCache()
    began = time.monotonic()
    cache.forget_key("key_a")  # the revocation commits while the lookup is under way
    cache.remember("digest-a", principal("key_a"), began)
    assert cache.get("digest-a") is None
    cache.remember("digest-b", principal("key_b"), began)  # another key: kept
    assert cache.get("digest-b") == principal("key_b")
    cache.remember("digest-a", principal("key_a"), time.monotonic() + 1)  # a later lookup
    assert cache.get("digest-a") == principal("key_a")
