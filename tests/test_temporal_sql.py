"""The rebuild's SQL-derived temporal rows (projections/temporal_sql.py, with the lazy Writer folding
only the refolded pairs) equal the catch-up's rows, built event by event by the Python Writer, on
random seat histories: out-of-order (backdated) events, corrections, suspensions, unsorted and
repeated grants, queues and expiries."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.events import NewEvent
from ledger.licences import (LicenceExpired, PoolCreated, ProductDefined, SeatAssigned, SeatDequeued,
                             SeatEndCorrected, SeatGrantsChanged, SeatQueued, SeatReleased, SeatResumed,
                             SeatSuspended)
from ledger.store import StreamChange
from projections import temporal as tp
from projections.rebuild import TEMPORAL_TABLES, rebuild_tenant

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
# names an array's text form must quote (braces, commas, quotes, backslashes, spaces, the key's '|'),
# and non-ASCII ones (code point order is "C" order)
GRANTS = st.lists(st.sampled_from(["b", "a", "rule-1", "z", "{x,y}", 'say "hi"', "back\\slash", " spaced ", "a|b",
                                   "ünï", "Zeta", "NULL"]), min_size=1, max_size=3)


def _event(kind, pool, user, grants, hours, other):
    at = T0 + timedelta(hours=hours)
    return {
        "assign": lambda: SeatAssigned(pool_id=pool, user_id=user, grants=grants, priority=other % 3,
                                       overage=other % 5 == 0),
        "queue": lambda: SeatQueued(pool_id=pool, user_id=user, grants=grants, priority=other % 4),
        "grants": lambda: SeatGrantsChanged(pool_id=pool, user_id=user, grants=grants, priority=other % 2),
        "suspend": lambda: SeatSuspended(pool_id=pool, user_id=user, until=at + timedelta(days=other % 9)),
        "resume": lambda: SeatResumed(pool_id=pool, user_id=user),
        "release": lambda: SeatReleased(pool_id=pool, user_id=user, reason=["no_grant", "admin", "correction"][other % 3]),
        "dequeue": lambda: SeatDequeued(pool_id=pool, user_id=user, reason="no_grant"),
        "expire": lambda: LicenceExpired(pool_id=pool, user_id=user, term_end=at),
        "end_corrected": lambda: SeatEndCorrected(pool_id=pool, user_id=user, ended_at=at,
                                                  previous_end=at + timedelta(hours=1)),
    }[kind](), at


EVENTS = st.lists(st.tuples(
    st.sampled_from(["assign", "assign", "queue", "grants", "suspend", "resume", "release", "dequeue", "expire",
                     "end_corrected"]),
    st.sampled_from(["p1", "p2"]), st.sampled_from(["u1", "u2", "u3"]), GRANTS,
    st.integers(0, 40), st.integers(0, 20), st.booleans()), min_size=1, max_size=40)


IN_ORDER = st.lists(st.tuples(
    st.sampled_from(["assign", "assign", "queue", "grants", "suspend", "resume", "release", "dequeue", "expire"]),
    st.sampled_from(["p1", "p2"]), st.sampled_from(["u1", "u2", "u3"]), GRANTS,
    st.integers(0, 40), st.integers(0, 20), st.just(False)), min_size=1, max_size=40)


@given(events=EVENTS)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_sql_rows_equal_the_catch_up(store, app_pool, events):
    _check_against_the_catch_up(store, app_pool, events)


@given(events=IN_ORDER)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_sql_rows_of_in_order_histories_equal_the_catch_up(store, app_pool, events):
    """Every pair in order and without a correction: every row comes from SQL."""
    _check_against_the_catch_up(store, app_pool, events)


def _check_against_the_catch_up(store, app_pool, events):
    tenant = "ts-" + uuid.uuid4().hex[:8]

    async def run():
        setup = [StreamChange("product-x", None, [NewEvent(ProductDefined(product_id="x", name="X"))])]
        setup += [StreamChange(f"pool-{p}", None, [NewEvent(PoolCreated(
            pool_id=p, product_id="x", seats=2, term_start=T0, term_end=T0 + timedelta(days=400)), T0)])
            for p in ("p1", "p2")]
        await store.append(tenant, setup)
        clock = 0
        for kind, pool, user, grants, step, other, backdated in events:
            clock += step
            ev, at = _event(kind, pool, user, grants, clock - (step * 2 if backdated else 0), other)
            await store.append(tenant, [StreamChange(f"pool-{pool}", None, [NewEvent(ev, at)])])
        await tp.ensure_current(app_pool, tenant)            # the catch-up: the Python Writer, eager
        rep = await rebuild_tenant(app_pool, tenant, check=True)   # SQL + the lazy Writer
        temporal = {t.name for t in TEMPORAL_TABLES}
        bad = [(t.table, t.differences) for t in rep.tables if t.table in temporal and not t.ok]
        assert not bad, bad
    asyncio.get_event_loop().run_until_complete(run())


def test_a_ledger_sql_cannot_read_is_folded_in_python(store, app_pool, monkeypatch):
    """A seat event before its pool was created (SQL would give its rows the pool's product): the lazy
    fold notices and the rebuild folds the temporal tables wholly in Python, as the catch-up does."""
    import projections.rebuild as rb
    tenant = "te-" + uuid.uuid4().hex[:8]
    runs = []
    real = rb._rebuild_tenant

    async def spy(*a, **kw):
        runs.append(kw.get("lazy", True))
        return await real(*a, **kw)

    monkeypatch.setattr(rb, "_rebuild_tenant", spy)

    async def run():
        await store.append(tenant, [StreamChange("pool-p9", None, [
            NewEvent(SeatAssigned(pool_id="p9", user_id="u1", grants=["a"], priority=1), T0),
            NewEvent(SeatReleased(pool_id="p9", user_id="u1", reason="admin"), T0 + timedelta(hours=1))])])
        await store.append(tenant, [StreamChange("pool-p9", None, [NewEvent(PoolCreated(
            pool_id="p9", product_id="x", seats=1, term_start=T0, term_end=T0 + timedelta(days=9)), T0)])])
        await store.append(tenant, [StreamChange("pool-p9", None, [
            NewEvent(SeatAssigned(pool_id="p9", user_id="u2", grants=["b", "a"], priority=1), T0 + timedelta(hours=2))])])
        await tp.ensure_current(app_pool, tenant)
        rep = await rebuild_tenant(app_pool, tenant, check=True)
        temporal = {t.name for t in TEMPORAL_TABLES}
        assert runs == [True, False]
        assert all(t.ok for t in rep.tables if t.table in temporal), \
            [(t.table, t.differences) for t in rep.tables if not t.ok]
    asyncio.get_event_loop().run_until_complete(run())


async def test_a_failing_temporal_group_fails_the_rebuild_and_changes_nothing(store, app_pool, monkeypatch):
    """The temporal group fails while the fold runs: the rebuild raises it (the fold stops) and the
    temporal tables keep what they had."""
    import projections.rebuild_temporal as rt
    tenant = "tf-" + uuid.uuid4().hex[:8]
    await store.append(tenant, [StreamChange("product-x", None, [NewEvent(ProductDefined(product_id="x", name="X"))]),
                                StreamChange("pool-p1", None, [NewEvent(PoolCreated(
                                    pool_id="p1", product_id="x", seats=2, term_start=T0,
                                    term_end=T0 + timedelta(days=9)), T0)])])
    await store.append(tenant, [StreamChange("pool-p1", None, [
        NewEvent(SeatAssigned(pool_id="p1", user_id="u1", grants=["a"], priority=1), T0)])])

    async def broken(*a, **kw):
        raise RuntimeError("derivation failed")

    monkeypatch.setattr(rt.tsql, "write", broken)
    import pytest
    with pytest.raises(RuntimeError, match="derivation failed"):
        await rebuild_tenant(app_pool, tenant)
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM seat_intervals WHERE tenant_id = $1", tenant) == 0
        assert await conn.fetchval("SELECT count(*) FROM temporal_marks WHERE tenant_id = $1", tenant) == 0
