"""Bearer-token authentication and tenant/scope authorisation.

Every tenant-scoped URL names its tenant; a token of tenant A gets 403 on tenant B's URLs, whatever
the path, and a token of the wrong scope gets 403. Unknown, malformed or revoked tokens get 401.

Caching (every request authenticates, so the hot path must be a dict lookup): a token's row is read
at most once per CACHE_SECONDS per process, and a header whose secret was verified against that row
maps straight to its Principal until the row's read + CACHE_SECONDS. Bound: a revocation (or an
issue) committed at instant t takes effect in every process by t + CACHE_SECONDS, whatever the load.
Concurrent misses of one token share one read (no burst of identical queries when an entry expires
under load). Only verified headers are kept, so made-up tokens cannot grow the header map.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web

from ledger.tokens import parse_token, secret_matches

# A revocation is visible to every process within this many seconds (the cache's lifetime).
CACHE_SECONDS = 1.0
LAST_USED_EVERY = 60.0


@dataclass(frozen=True, slots=True)       # one instance is shared by the requests of a cached header
class Principal:
    tenant: str
    token_id: str
    scope: str

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


class AuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, pool, clock=time.monotonic):
        self.pool = pool
        self.clock = clock
        self._rows: dict[str, tuple[float, object]] = {}            # token id -> (read at, row or None)
        self._verified: dict[str, tuple[float, Principal]] = {}      # header -> (valid until, principal)
        self._reading: dict[str, asyncio.Task] = {}                  # token id -> the read in flight
        self._used: dict[str, float] = {}

    async def _row(self, token_id: str) -> tuple[float, object]:
        hit = self._rows.get(token_id)
        if hit and self.clock() - hit[0] < CACHE_SECONDS:
            return hit
        task = self._reading.get(token_id)
        if task is None:
            # a task of its own, not the first caller's: a client that goes away cancels only its wait
            task = self._reading[token_id] = asyncio.ensure_future(self._read(token_id))
            task.add_done_callback(lambda t: (self._reading.pop(token_id, None),
                                              t.cancelled() or t.exception()))   # exception retrieved
        return await asyncio.shield(task)

    async def _read(self, token_id: str) -> tuple[float, object]:
        read_at = self.clock()      # before the read: the bound counts from here
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT tenant_id, scope, secret_hash, revoked_at FROM api_tokens "
                                      "WHERE token_id = $1", token_id)
        if len(self._rows) > MAX_ENTRIES:
            self._rows.clear()
        hit = self._rows[token_id] = (read_at, row)
        return hit

    async def authenticate(self, header: str | None) -> Principal:
        hit = self._verified.get(header)        # the hot path: this exact header was verified lately
        if hit is not None and self.clock() < hit[0]:
            return hit[1]
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "a bearer token is required")
        parsed = parse_token(header[7:].strip())
        if parsed is None:
            raise AuthError(401, "invalid token")
        tid, secret = parsed
        read_at, row = await self._row(tid)
        if row is None or not secret_matches(secret, bytes(row["secret_hash"])) or row["revoked_at"] is not None:
            raise AuthError(401, "invalid or revoked token")
        await self._touch(tid)
        principal = Principal(row["tenant_id"], tid, row["scope"])
        if len(self._verified) > MAX_ENTRIES:
            self._verified.clear()
        self._verified[header] = (read_at + CACHE_SECONDS, principal)
        return principal

    async def _touch(self, tid: str) -> None:
        now = time.monotonic()
        if now - self._used.get(tid, 0.0) < LAST_USED_EVERY:
            return
        self._used[tid] = now
        async with self.pool.acquire() as conn:
            await conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE token_id = $1", tid)


def authorize(principal: Principal, tenant: str, scopes: tuple[str, ...]) -> None:
    if principal.tenant != tenant:
        raise AuthError(403, "this token belongs to another tenant")
    if principal.scope not in scopes:
        raise AuthError(403, f"this endpoint needs a token of scope {' or '.join(scopes)}")
