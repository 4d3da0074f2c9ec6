"""The scheduler records expiries at their instant, catches up, and records each once."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from api.scheduler import LicenceScheduler
from ledger.executor import CommandBus
from ledger.licence_admin import AdminAssign, CreatePool, DefineProduct, ResizePool
from test_licence_admin import add_users, seats


async def test_expiry_recorded_near_its_instant_once_with_two_schedulers(store, app_pool, pg_pool, tenant, bus):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}})
    now = datetime.now(timezone.utc)
    end = now + timedelta(seconds=1.5)
    await bus.execute(tenant, DefineProduct("x", "X"))
    await bus.execute(tenant, CreatePool("p1", "x", 2, now - timedelta(days=1), end))
    await bus.execute(tenant, AdminAssign("p1", "a"))
    await bus.execute(tenant, AdminAssign("p1", "b"))
    b1, b2 = CommandBus(store), CommandBus(store)
    s1, s2 = LicenceScheduler(b1, app_pool, interval=60), LicenceScheduler(b2, app_pool, interval=60)
    s1.start(); s2.start()
    try:
        for _ in range(60):
            if await seats(pg_pool, tenant) == {}:
                break
            await asyncio.sleep(0.1)
        assert await seats(pg_pool, tenant) == {}
        await asyncio.sleep(0.3)
    finally:
        s1.shutdown(); s2.shutdown()
        await b1.close(); await b2.close()
    exp = [e for e in await store.read_stream(tenant, "pool-p1") if e.type == "LicenceExpired"]
    assert sorted(e.data["user_id"] for e in exp) == ["a", "b"]
    assert all(e.effective_at == end and timedelta(0) < e.recorded_at - end < timedelta(seconds=1) for e in exp)
    assert all(e.metadata["source"] == "scheduler" and e.idempotency_key.startswith("expire:") for e in exp)


async def test_catch_up_on_start(store, app_pool, pg_pool, tenant, bus):
    """Down at the term end: the first sweep records the expiry with the term end as its instant."""
    await add_users(pg_pool, tenant, {"a": {}})
    now = datetime.now(timezone.utc)
    await bus.execute(tenant, DefineProduct("x", "X"))
    await bus.execute(tenant, CreatePool("p1", "x", 1, now - timedelta(days=1), now + timedelta(milliseconds=300)))
    await bus.execute(tenant, AdminAssign("p1", "a"))
    await bus.execute(tenant, ResizePool("p1", 0, effective_at=now + timedelta(milliseconds=100)))
    await asyncio.sleep(0.5)                         # "the service was down"
    s = LicenceScheduler(bus, app_pool, interval=60)
    assert await s.tick(tenant) >= 1
    evs = [e for e in await store.read_stream(tenant, "pool-p1") if e.type in ("LicenceExpired", "SeatReleased")]
    assert len(evs) == 1
    assert await s.tick(tenant) == 0                 # nothing more to record
