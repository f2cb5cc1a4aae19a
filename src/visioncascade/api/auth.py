"""API keys and rate limits: which key is calling, may it, and how fast. No HTTP here.

Keys are ``vc_<prefix>_<secret>`` (256 random bits); the database keeps only their SHA-256. A checked key is
cached for ``key_cache_seconds`` so a request costs no database round trip; a revoked key therefore stops
working within that time. Scopes: ``ingest`` posts events, ``read`` lists events and stats, ``admin`` may do
both and read the rules status.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass

from visioncascade.api.storage import Database, KeyRecord, find_api_key, hash_key

__all__ = ["Authenticator", "Principal", "RateLimiter", "allows"]

BOOTSTRAP_KEY_ID = 0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and scope."""

    key_id: int
    name: str
    scope: str


def allows(scope: str, needed: str) -> bool:
    """Whether a key with ``scope`` may do what needs ``needed`` (admin may do everything)."""
    return scope == needed or scope == "admin"


class Authenticator:
    """Checks raw keys against the database (with a short cache) and the bootstrap admin key."""

    def __init__(self, db: Database, bootstrap_key: str | None = None, cache_seconds: float = 10.0) -> None:
        self.db = db
        self._bootstrap_hash = hash_key(bootstrap_key) if bootstrap_key else None
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def lookup_cached(self, raw: str) -> tuple[bool, Principal | None]:
        """``(hit, principal)`` from the cache only (no I/O)."""
        h = hash_key(raw)
        if self._bootstrap_hash is not None and hmac.compare_digest(h, self._bootstrap_hash):
            return True, Principal(BOOTSTRAP_KEY_ID, "bootstrap", "admin")
        entry = self._cache.get(h)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def lookup(self, raw: str) -> Principal | None:
        """The principal of ``raw`` or None (blocking: may query the database)."""
        hit, principal = self.lookup_cached(raw)
        if hit:
            return principal
        h = hash_key(raw)
        record: KeyRecord | None = find_api_key(self.db, h)
        principal = Principal(record.id, record.name, record.scope) if record is not None else None
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[h] = (time.monotonic() + self.cache_seconds, principal)
        return principal


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second sustained, ``burst`` at once.

    Limits are per server process (with ``--workers N`` a key may reach N times the rate).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[int, tuple[float, float]] = {}

    def acquire(self, key_id: int, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= cost:
            self._buckets[key_id] = (tokens - cost, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (cost - tokens) / self.rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """The ``Retry-After`` value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(seconds)))
