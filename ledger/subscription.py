"""Catch-up subscriptions with stored checkpoints that never skip an event committed late.

* Per tenant: follow the gapless sequence. A tenant's sequences commit in order (the head lock is
  held to commit), so "seq > checkpoint" never misses anything.
* All tenants: global positions can commit out of order across tenants (tenant A takes position 10,
  tenant B takes 11 and commits first). The reader only reads transactions below the horizon, the
  xmin of its snapshot: all of those have ended, so a window [from, xmin) is final. See
  EventStore.read_all.

Wake-ups: one NOTIFY per committed batch, on a dedicated LISTEN connection, plus polling in case a
notification is lost (a LISTEN connection that drops misses them).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import asyncpg

from .events import RecordedEvent
from .store import NOTIFY_CHANNEL, EventStore

log = logging.getLogger(__name__)
Handler = Callable[[list[RecordedEvent]], Awaitable[None]]


class Wakeups:
    """One LISTEN connection per process. Subscriptions wait on it for any append (or a poll timeout);
    a tenant's waiters (`subscribe`: SSE streams, entitlement tables) are woken by its appends only;
    `listeners` get every payload (`tenant:seq`)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None
        self._event = asyncio.Event()
        self.listeners: list[Callable[[str], None]] = []
        self.waiters: dict[str, set[asyncio.Event]] = {}

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.add_listener(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, conn, pid, channel, payload: str) -> None:
        self._event.set()
        for ev in self.waiters.get(payload.rsplit(":", 1)[0], ()):
            ev.set()
        for fn in self.listeners:
            fn(payload)

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._event.clear()

    def subscribe(self, tenant: str) -> asyncio.Event:
        """An event set at each append of `tenant` (the caller clears it)."""
        ev = asyncio.Event()
        self.waiters.setdefault(tenant, set()).add(ev)
        return ev

    def unsubscribe(self, tenant: str, ev: asyncio.Event) -> None:
        self.waiters.get(tenant, set()).discard(ev)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class _Polling:
    """Deliver batches until there are none, then wait for a wake-up (or the poll interval)."""

    async def poll(self) -> int:
        raise NotImplementedError

    async def run(self, wakeups: Wakeups | None, poll_interval: float = 1.0) -> None:
        while True:
            if await self.poll() == 0:
                if wakeups:
                    await wakeups.wait(poll_interval)
                else:
                    await asyncio.sleep(poll_interval)


class TenantSubscription(_Polling):
    def __init__(self, store: EventStore, name: str, tenant: str, handler: Handler, batch: int = 1000):
        self.store, self.name, self.tenant, self.handler, self.batch = store, name, tenant, handler, batch

    async def position(self) -> int:
        async with self.store.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT seq FROM checkpoints WHERE subscriber = $1 AND tenant_id = $2", self.name, self.tenant) or 0

    async def poll(self) -> int:
        """Deliver what is there; returns the number of events delivered."""
        after = await self.position()
        events = await self.store.read_tenant(self.tenant, after, self.batch)
        if events:
            await self.handler(events)
            async with self.store.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO checkpoints (subscriber, tenant_id, seq) VALUES ($1, $2, $3) "
                    "ON CONFLICT (subscriber, tenant_id) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()",
                    self.name, self.tenant, events[-1].seq)
        return len(events)


class AllTenantsSubscription(_Polling):
    def __init__(self, store: EventStore, name: str, handler: Handler, batch: int = 1000):
        self.store, self.name, self.handler, self.batch = store, name, handler, batch

    async def _load(self) -> tuple[int, int | None, int]:
        async with self.store.pool.acquire() as conn:
            r = await conn.fetchrow(
                "SELECT horizon::text AS h, window_end::text AS w, seq FROM checkpoints "
                "WHERE subscriber = $1 AND tenant_id = '*'", self.name)
        if r is None:
            return 0, None, 0
        return int(r["h"] or 0), (int(r["w"]) if r["w"] else None), r["seq"]

    async def _save(self, horizon: int, window_end: int | None, after: int) -> None:
        async with self.store.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO checkpoints (subscriber, tenant_id, seq, horizon, window_end) "
                "VALUES ($1, '*', $2, $3::text::xid8, $4::text::xid8) ON CONFLICT (subscriber, tenant_id) "
                "DO UPDATE SET seq = EXCLUDED.seq, horizon = EXCLUDED.horizon, window_end = EXCLUDED.window_end, "
                "updated_at = now()", self.name, after, str(horizon), None if window_end is None else str(window_end))

    async def poll(self) -> int:
        horizon, window_end, after = await self._load()
        events, window_end, exhausted = await self.store.read_all(horizon, after, self.batch, window_end)
        if events:
            await self.handler(events)
        if exhausted:
            await self._save(window_end, None, 0)
        else:
            await self._save(horizon, window_end, events[-1].position)
        return len(events)
