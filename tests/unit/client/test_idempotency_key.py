"""A submission's idempotency key: a random version-4 UUID in its canonical text."""

from __future__ import annotations

import uuid

from rgrid.client import idempotency_key


def test_keys_are_canonical_random_uuids() -> None:
    keys = [idempotency_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(key)
        assert str(parsed) == key
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
