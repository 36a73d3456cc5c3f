"""A token bucket per API key, held in this API process: each replica limits on its own, so a
key may make up to `replicas x rate` requests per second across a deployment.

Only keys that authenticated get a bucket, so the memory held grows with the keys in use, not
with whatever strings clients send; buckets that have filled up again are forgotten.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import RateLimitedError
from service.observability.metrics import HTTP_RATE_LIMITED

# Below this many buckets nothing is swept; above it, a sweep runs each time the count doubles,
# so sweeping costs O(1) per request on average.
_SWEEP_FLOOR = 1024


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` requests per second per key, sustained, with bursts of up to `burst`; rate 0 turns
    the limit off."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[bytes, _Bucket] = {}
        self._sweep_at = _SWEEP_FLOOR

    def check(self, key: str, *, route: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimitedError (and count it)."""
        wait = self.take(key)
        if wait is not None:
            HTTP_RATE_LIMITED.labels(route=route).inc()
            raise RateLimitedError(retry_after=max(1, math.ceil(wait)))

    def take(self, key: str) -> float | None:
        """None if `key` may make a request now (it is counted), else the seconds to wait."""
        if self._rate <= 0:
            return None
        now = self._clock()
        # The digest, not the key: a secret has no business sitting in a long-lived dict.
        digest = hashlib.sha256(key.encode()).digest()
        bucket = self._buckets.get(digest)
        if bucket is None:
            bucket = self._buckets[digest] = _Bucket(self._burst, now)
            self._sweep(now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._rate

    def _sweep(self, now: float) -> None:
        if len(self._buckets) < self._sweep_at:
            return
        full_after = self._burst / self._rate  # seconds: a bucket idle this long is full again
        self._buckets = {
            digest: bucket
            for digest, bucket in self._buckets.items()
            if now - bucket.updated < full_after
        }
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)
