"""API keys a grid process authenticated in the last seconds, kept in its memory."""

from __future__ import annotations

import time

from rgrid import domain

#: how long an authenticated key is believed without asking the store again: a key revoked
#: through another process of the same grid stops working within this time
KEY_CACHE_S = 2.0
CACHED_KEYS = 4096
#: how long a key revoked through this process is remembered as such: a lookup that began
#: before the revocation and ends after it must not put the key back
REVOKED_MEMORY_S = 60.0


class KeyCache:
    """Principals by their key's sha256, for ``KEY_CACHE_S`` each: a client sending hundreds of
    requests a second is looked up in the store once every two seconds (every request was a
    transaction of its own, a third of the time of a status read). A key revoked through this
    process is forgotten at once; unknown and revoked keys are never kept."""

    def __init__(self, ttl_s: float = KEY_CACHE_S, size: int = CACHED_KEYS) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._known: dict[str, tuple[float, domain.Principal]] = {}
        #: key id -> when it was revoked through this process (monotonic)
        self._revoked: dict[str, float] = {}

    def get(self, digest: str) -> domain.Principal | None:
        found = self._known.get(digest)
        if found is None:
            return None
        until, principal = found
        if time.monotonic() >= until:
            del self._known[digest]
            return None
        return principal

    def remember(self, digest: str, principal: domain.Principal, looked_up_at: float) -> None:
        """Keep ``principal``, found by a lookup that began at ``looked_up_at`` (monotonic),
        unless its key was revoked through this process since."""
        revoked = self._revoked.get(principal.key_id)
        if revoked is not None and revoked >= looked_up_at:
            return  # the lookup read the key before its revocation committed
        if len(self._known) >= self._size:
            now = time.monotonic()
            self._known = {d: kept for d, kept in self._known.items() if kept[0] > now}
            if len(self._known) >= self._size:
                self._known.clear()  # thousands of live keys at once: start over
        self._known[digest] = (time.monotonic() + self._ttl_s, principal)

    def forget_key(self, key_id: str) -> None:
        now = time.monotonic()
        self._revoked = {k: at for k, at in self._revoked.items() if now - at < REVOKED_MEMORY_S}
        self._revoked[key_id] = now
        self._known = {d: kept for d, kept in self._known.items() if kept[1].key_id != key_id}
