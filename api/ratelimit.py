"""Per-tenant rate limiting: a token bucket shared by all the service's processes.

Configuration: `SEATLEDGER_RATE_PER_S` (tokens per second, default 2000) and
`SEATLEDGER_RATE_BURST` (bucket size, default 4000), per tenant across the whole service. Every
authenticated request to a tenant's URLs (`/scim/v2/<tenant>/…`, `/v1/<tenant>/…`) takes one
token; an empty bucket answers 429 with `Retry-After` (whole seconds, ≥ 1) before the handler
runs, so a 429 writes nothing and retrying it is safe. A /Bulk request is one request (it is
bounded by maxOperations/maxPayloadSize instead).

Design choice — a per-process bucket with the rate divided by the number of live processes,
rather than one bucket row per tenant in PostgreSQL:
* cost: the check runs on every request. In memory it is a dict lookup and some arithmetic
  (~1 µs). A row in PostgreSQL costs a pool acquire and a round trip per request (0.2–0.5 ms of
  client and server CPU on the 2-core target), and every request of a busy tenant would
  serialize on that tenant's row lock — at 1,000 creates/s that is a hot row updated 1,000
  times a second, competing with the ledger's own writes;
* sharing: each process heartbeats a row in `service_processes` (unlogged; every
  HEARTBEAT_SECONDS) and counts the processes seen within LIVE_SECONDS; its buckets refill at
  rate/N with room for burst/N. Behind a load balancer that spreads requests evenly (round robin,
  least connections) the sum is the configured rate. The approximation errs on the strict side
  when a tenant's traffic lands unevenly, and it follows scale-out/in within LIVE_SECONDS;
* failure: when the heartbeat cannot reach the database the last known count is kept (the
  request path never waits on it).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
import uuid

from aiohttp import web

log = logging.getLogger(__name__)

# Generous: above the service's throughput target (1,000 creates/s for one tenant), so the limit
# guards against runaway clients without capping a legitimate onboarding.
DEFAULT_RATE = 2000.0
DEFAULT_BURST = 4000.0
HEARTBEAT_SECONDS = 5.0
LIVE_SECONDS = 15.0
MAX_TENANTS = 100_000


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not v > 0 or math.isinf(v):
        raise ValueError(f"{name} must be positive and finite, got {raw!r}")
    return v


class RateLimiter:
    """Token buckets per tenant: take(tenant) → 0.0 when a token was taken, else the seconds until
    one is available (nothing is taken then)."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst = float(rate), float(burst)
        self.processes = 1
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}     # tenant -> [tokens, last refill]

    @classmethod
    def from_env(cls) -> "RateLimiter":
        return cls(_env_float("SEATLEDGER_RATE_PER_S", DEFAULT_RATE),
                   _env_float("SEATLEDGER_RATE_BURST", DEFAULT_BURST))

    def take(self, tenant: str) -> float:
        now = self.clock()
        n = self.processes
        rate = self.rate / n
        burst = max(1.0, self.burst / n)
        b = self._buckets.get(tenant)
        if b is None:
            if len(self._buckets) >= MAX_TENANTS:
                self._prune(now)
            self._buckets[tenant] = [burst - 1.0, now]
            return 0.0
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / rate

    def _prune(self, now: float) -> None:
        # a bucket idle long enough to be full again is the same as no bucket
        full_after = self.burst / self.rate
        for t in [t for t, b in self._buckets.items() if now - b[1] > full_after]:
            del self._buckets[t]
        if len(self._buckets) >= MAX_TENANTS:
            self._buckets.clear()


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def rate_limited(scim: bool, wait: float) -> web.Response:
    """429 with Retry-After; a SCIM error body on /scim paths (RFC 7644 defines no scimType)."""
    headers = {"Retry-After": retry_after(wait)}
    detail = f"too many requests for this tenant; retry after {headers['Retry-After']} s"
    if scim:
        from .scim_errors import scim_error
        return scim_error(429, detail, headers=headers)
    return web.json_response({"error": detail, "status": 429}, status=429, headers=headers)


class Heartbeat:
    """Counts the live service processes (sharing the database) for the limiter."""

    def __init__(self, pool, limiter: RateLimiter):
        self.pool, self.limiter = pool, limiter
        self.process_id = uuid.uuid4().hex
        self._task: asyncio.Task | None = None

    async def beat(self) -> int:
        async with self.pool.acquire() as conn:
            n = await conn.fetchval(
                "WITH me AS (INSERT INTO service_processes (process_id, seen_at) VALUES ($1, now()) "
                "ON CONFLICT (process_id) DO UPDATE SET seen_at = now()) "
                "SELECT count(*) FROM service_processes WHERE process_id <> $1 "
                "AND seen_at > now() - make_interval(secs => $2)", self.process_id, LIVE_SECONDS)
            if random.random() < 0.1:     # now and then, forget processes long gone
                await conn.execute("DELETE FROM service_processes WHERE seen_at < now() - "
                                   "make_interval(secs => $1)", LIVE_SECONDS * 4)
        self.limiter.processes = 1 + int(n or 0)
        return self.limiter.processes

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the last count; the request path never waits
                log.warning("rate-limit heartbeat failed: %s", exc)

    async def start(self, app=None) -> None:
        try:                 # know the count before the first request
            await self.beat()
        except Exception as exc:  # noqa: BLE001
            log.warning("rate-limit heartbeat failed: %s", exc)
        self._task = asyncio.create_task(self._loop())

    async def stop(self, app=None) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            async with self.pool.acquire() as conn:
                await conn.execute("DELETE FROM service_processes WHERE process_id = $1", self.process_id)
        except Exception:  # noqa: BLE001 - the row expires by itself
            pass


LIMITER = web.AppKey("rate_limiter", RateLimiter)


def setup(app: web.Application, pool) -> None:
    limiter = RateLimiter.from_env()
    app[LIMITER] = limiter
    hb = Heartbeat(pool, limiter)
    app.on_startup.append(hb.start)
    app.on_cleanup.append(hb.stop)
