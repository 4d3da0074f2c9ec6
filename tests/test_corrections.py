"""Corrections: history rewritten from the effective time, never anyone else's; freed seats go to
the waiting from the moment the correction is recorded; an earlier start needs a free seat."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledger.executor import CommandRejected
from ledger.licence_admin import (AddRule, AdminAssign, AdminRevoke, CorrectSeatEnd, CorrectSeatStart,
                                  CreatePool, DefineProduct)
from ledger.licences import holding_intervals
from test_licence_admin import add_users, seats


async def history(store, tenant, pool="p1"):
    evs = await store.read_stream(tenant, f"pool-{pool}")
    return holding_intervals([(e.decoded(), e.effective_at, e.seq) for e in evs])


async def setup(bus, tenant, seats_n=1, start_days=30):
    now = datetime.now(timezone.utc)
    await bus.execute(tenant, DefineProduct("x", "X"))
    await bus.execute(tenant, CreatePool("p1", "x", seats_n, now - timedelta(days=start_days), now + timedelta(days=300)))
    return now


async def test_end_moves_back_for_an_ended_holding(bus, store, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}})
    await setup(bus, tenant)
    await bus.execute(tenant, AdminAssign("p1", "a"))
    await bus.execute(tenant, AdminRevoke("p1", "a"))
    (start, end, _), = (await history(store, tenant))["a"]
    corrected = start + (end - start) / 2
    await bus.execute(tenant, CorrectSeatEnd("p1", "a", corrected, reason="left earlier"))
    assert (await history(store, tenant))["a"][0][:2] == [start, corrected]
    ev = (await store.read_stream(tenant, "pool-p1"))[-1]
    assert ev.type == "SeatEndCorrected" and ev.effective_at == corrected and ev.recorded_at > end
    for bad in (start - timedelta(seconds=1), end + timedelta(seconds=1)):
        with pytest.raises(CommandRejected):
            await bus.execute(tenant, CorrectSeatEnd("p1", "a", bad))


async def test_end_of_a_held_seat_refused_while_rules_grant_it(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}})
    await setup(bus, tenant)
    await bus.execute(tenant, AddRule("p1", "all", 1, "all_active"))
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, CorrectSeatEnd("p1", "a", datetime.now(timezone.utc)))
    assert e.value.status == 409 and "all" in e.value.detail


async def test_end_of_a_held_seat_frees_it_now_for_the_waiting(bus, store, pg_pool, tenant):
    """a holds (rule), b waits; the directory deactivates a - then an admin says a left earlier."""
    await add_users(pg_pool, tenant, {"a": {}, "b": {}})
    now = await setup(bus, tenant)
    await bus.execute(tenant, AdminAssign("p1", "a"))
    await bus.execute(tenant, AdminAssign("p1", "b"))
    assert await seats(pg_pool, tenant) == {"a": "active", "b": "waiting"}
    await pg_pool.execute("DELETE FROM licence_admin_grants WHERE tenant_id = $1 AND user_id = 'a'", tenant)
    past = now - timedelta(hours=1)
    with pytest.raises(CommandRejected):            # before a's holding started
        await bus.execute(tenant, CorrectSeatEnd("p1", "a", past))
    start = (await history(store, tenant))["a"][0][0]
    await bus.execute(tenant, CorrectSeatEnd("p1", "a", start + timedelta(microseconds=1)))
    assert await seats(pg_pool, tenant) == {"b": "active"}
    h = await history(store, tenant)
    assert h["a"][0][1] == start + timedelta(microseconds=1)
    assert h["b"][0][0] > start + timedelta(microseconds=1), "b gets the seat from the recording, not retroactively"


async def test_start_earlier_needs_a_free_seat_for_the_whole_span(bus, store, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}})
    now = await setup(bus, tenant, seats_n=1)
    await bus.execute(tenant, AdminAssign("p1", "a"))
    await bus.execute(tenant, AdminRevoke("p1", "a"))
    await bus.execute(tenant, AdminAssign("p1", "b"))
    h = await history(store, tenant)
    a_start, a_end, _ = h["a"][0]
    b_start = h["b"][0][0]
    # b's seat cannot have started while a held the only seat
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, CorrectSeatStart("p1", "b", a_start - timedelta(days=1)))
    assert e.value.status == 409 and e.value.extra["instant"] == a_start.isoformat()
    # before a's holding the pool was free
    with pytest.raises(CommandRejected):
        await bus.execute(tenant, CorrectSeatStart("p1", "b", now - timedelta(days=31)))   # before the term
    await bus.execute(tenant, CorrectSeatStart("p1", "b", a_end))
    assert (await history(store, tenant))["b"][0][0] == a_end
    del b_start
