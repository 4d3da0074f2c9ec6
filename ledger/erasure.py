"""Erasure of a subject's personal data (GDPR art. 17) without breaking the hash chain.

The subject's key is destroyed, so the ciphertext in the ledger can no longer be read; projections
clear the subject's personal fields through the erasers they register; a `SubjectErased` event
(carrying no personal data) records that it happened. All in one transaction under the tenant lock.
"""
from __future__ import annotations

from typing import Awaitable, Callable

import asyncpg

from .events import Event, NewEvent, event
from .store import EventStore, StreamChange, lock_head, plan_rows, stream_versions

ERASE_CHANNEL = "seatledger_erase"

Eraser = Callable[[asyncpg.Connection, str, str], Awaitable[None]]
_erasers: list[Eraser] = []


def register_eraser(fn: Eraser) -> Eraser:
    """Projections that hold personal fields register a function clearing them for a subject."""
    _erasers.append(fn)
    return fn


@event("SubjectErased")
class SubjectErased(Event):
    subject: str
    reason: str | None = None


async def erase(store: EventStore, tenant: str, subject: str, *, actor: str = "cli",
                reason: str | None = None) -> bool:
    """Returns False when the subject had no key (nothing personal was ever stored, or already erased)."""
    async with store.pool.acquire() as conn:
        async with conn.transaction():
            head = await lock_head(conn, tenant)
            deleted = await conn.fetchval(
                "WITH d AS (DELETE FROM subject_keys WHERE tenant_id = $1 AND subject = $2 RETURNING 1) "
                "SELECT count(*) FROM d", tenant, subject)
            await conn.execute("INSERT INTO erasures (tenant_id, subject) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               tenant, subject)
            for fn in _erasers:
                await fn(conn, tenant, subject)
            change = StreamChange(f"erasure-{subject}", None, [NewEvent(SubjectErased(subject=subject, reason=reason))])
            versions = await stream_versions(conn, tenant, [change.stream])
            rows = plan_rows([change], versions, {"actor": actor, "source": "admin"})
            await store.write(conn, tenant, head, rows)
            await conn.execute("SELECT pg_notify($1, $2)", ERASE_CHANNEL, f"{tenant}:{subject}")
    store.keys.forget(tenant, subject)
    return bool(deleted)
