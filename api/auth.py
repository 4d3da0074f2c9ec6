"""Bearer-token authentication and tenant/scope authorisation.

Every tenant-scoped URL names its tenant; a token of tenant A gets 403 on tenant B's URLs, whatever
the path, and a token of the wrong scope gets 403. Unknown, malformed or revoked tokens get 401.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from ledger.tokens import parse_token, secret_matches

# A revocation is visible to every process within this many seconds (the cache's lifetime).
CACHE_SECONDS = 1.0
LAST_USED_EVERY = 60.0


@dataclass
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


class TokenCache:
    def __init__(self, pool):
        self.pool = pool
        self._rows: dict[str, tuple[float, object]] = {}
        self._used: dict[str, float] = {}

    async def _row(self, token_id: str):
        now = time.monotonic()
        hit = self._rows.get(token_id)
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT tenant_id, scope, secret_hash, revoked_at FROM api_tokens "
                                      "WHERE token_id = $1", token_id)
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[token_id] = (now, row)
        return row

    async def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "a bearer token is required")
        parsed = parse_token(header[7:].strip())
        if parsed is None:
            raise AuthError(401, "invalid token")
        tid, secret = parsed
        row = await self._row(tid)
        if row is None or not secret_matches(secret, bytes(row["secret_hash"])) or row["revoked_at"] is not None:
            raise AuthError(401, "invalid or revoked token")
        await self._touch(tid)
        return Principal(row["tenant_id"], tid, row["scope"])

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
