"""A first build into tables no tenant has a row in drops their indexes in the loading transaction and
builds them after the load (projections/rebuild_bulk.py): the same rows and the same indexes as a
build that keeps them up; never while another tenant has rows, never without the owner's role,
never when a table is busy; a failed load leaves every index in place."""
from __future__ import annotations

import uuid

import asyncpg
import pytest

from ledger import db
from ledger.executor import CommandBus
from ledger.licence_admin import AddRule, AdminAssign
from ledger.migrate import migrate
from ledger.store import EventStore
from projections import rebuild as rb
from projections import rebuild_bulk as bulk
from projections import temporal as tp
from projections.rebuild import rebuild_tenant
from test_licence_admin import setup_pool
from test_rebuild import add_users

TABLES = ("seat_intervals", "temporal_pairs", "temporal_pools", "temporal_pool_changes", "temporal_marks",
          "licence_seats", "licence_pools", "scim_resources", "group_members")
INLINE = ("licence_seats", "licence_pools", "licence_products", "licence_rules", "licence_admin_grants",
          "scim_resources", "group_members", "scim_extensions")


@pytest.fixture
async def fresh():
    """A database of its own: "no tenant has a row" is about the whole database."""
    name = f"seatledger_bulk_{uuid.uuid4().hex[:8]}"
    d = await db.resolve(database=name)
    await migrate(d.migrate)
    pool = await db.create_pool(d.app, min_size=2, max_size=6)
    bus = CommandBus(EventStore(pool))
    try:
        yield d, pool, bus
    finally:
        await bus.close()
        await pool.close()
        admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(autouse=True)
def small_is_bulk(monkeypatch):
    """A handful of rows counts as a bulk load here."""
    monkeypatch.setattr(bulk, "BULK_ROWS", 1)
    monkeypatch.setattr(rb, "BULK_LOAD", 1)


async def seed(bus, tenant):
    await add_users(bus, tenant, ("a", "b", "c", "d"))
    await setup_pool(bus, tenant, 3)
    await bus.execute(tenant, AddRule("p1", "everyone", 10, "all_active"))     # a, b, c hold; d waits
    await bus.execute(tenant, AdminAssign("p1", "d"))


async def forget_projections(d, tenant=None):
    """The projections emptied (of one tenant, or all), as a restored database has them."""
    conn = await asyncpg.connect(d.migrate)
    try:
        for t in (*INLINE, "seat_intervals", "temporal_pairs", "temporal_pools", "temporal_pool_changes",
                  "temporal_marks"):
            await conn.execute(f"DELETE FROM {t}" + (" WHERE tenant_id = $1" if tenant else ""),
                               *([tenant] if tenant else []))
        await conn.execute("DELETE FROM checkpoints WHERE subscriber = $1" + (" AND tenant_id = $2" if tenant else ""),
                           tp.SUBSCRIBER, *([tenant] if tenant else []))
    finally:
        await conn.close()


async def indexes(d) -> list[tuple]:
    conn = await asyncpg.connect(d.migrate)
    try:
        return [tuple(r) for r in await conn.fetch(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[]) ORDER BY 1, 2",
            list(TABLES))] + [tuple(r) for r in await conn.fetch(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = ANY($1::regclass[]) ORDER BY 1, 2", list(TABLES))]
    finally:
        await conn.close()


async def snapshot(pool, tenant) -> dict[str, list]:
    async with pool.acquire() as conn:
        return {t: sorted(tuple(map(str, r)) for r in await conn.fetch(f"SELECT * FROM {t} WHERE tenant_id = $1", tenant))
                for t in TABLES}


def deferrals(monkeypatch) -> list:
    """What each `bulk.defer` call returned, as (tables asked, tables deferred)."""
    seen, real = [], bulk.defer

    async def spy(conn, tables):
        got = await real(conn, tables)
        seen.append((list(tables), got.tables if got else None))
        return got

    monkeypatch.setattr(bulk, "defer", spy)
    return seen


async def test_first_build_loads_bare_tables_and_builds_the_same_indexes(fresh, monkeypatch):
    d, pool, bus = fresh
    tenant = "t-" + uuid.uuid4().hex[:8]
    await seed(bus, tenant)
    await tp.ensure_current(pool, tenant)
    live = await snapshot(pool, tenant)           # what the write path and the catch-up made
    before = await indexes(d)
    await forget_projections(d)
    seen = deferrals(monkeypatch)
    rep = await rebuild_tenant(pool, tenant, owner=d.migrate)
    deferred = {t for _, got in seen for t in (got or ())}
    assert {"seat_intervals", "temporal_pairs", "licence_seats", "scim_resources"} <= deferred
    assert "temporal_indexes" in rep.phases and "inline_indexes" in rep.phases
    assert await indexes(d) == before
    assert await snapshot(pool, tenant) == live
    again = await rebuild_tenant(pool, tenant, check=True)
    assert again.ok, [(t.table, t.differences) for t in again.tables if not t.ok]
    # the indexes are there and used: a primary key refuses a duplicate
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO licence_seats SELECT * FROM licence_seats WHERE tenant_id = $1 LIMIT 1",
                               tenant)


async def test_no_deferral_for_a_table_another_tenant_has_rows_in(fresh, monkeypatch):
    d, pool, bus = fresh
    other, tenant = "t-" + uuid.uuid4().hex[:8], "t-" + uuid.uuid4().hex[:8]
    await seed(bus, other)
    await tp.ensure_current(pool, other)
    await seed(bus, tenant)
    await forget_projections(d, tenant)            # the other tenant keeps every row
    async with pool.acquire() as conn:
        held = {t for t in (*INLINE, *TABLES) if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {t})")}
    assert {"seat_intervals", "licence_seats", "scim_resources"} <= held
    seen, locked = deferrals(monkeypatch), set()
    real = bulk.defer

    async def and_locks(conn, tables):          # what is held exclusively once the load begins
        got = await real(conn, tables)
        async with pool.acquire() as other:
            locked.update(await other.fetchval(
                "SELECT coalesce(array_agg(relation::regclass::text), '{}') FROM pg_locks "
                "WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL AND granted"))
        return got

    monkeypatch.setattr(bulk, "defer", and_locks)
    await rebuild_tenant(pool, tenant, owner=d.migrate)
    deferred = {t for _, got in seen for t in (got or ())}
    assert seen and not deferred & held         # (a table no tenant has a row in yet may still be)
    assert not locked & held, locked            # the other tenant's tables stay readable and writable
    assert (await rebuild_tenant(pool, tenant, check=True)).ok
    assert (await rebuild_tenant(pool, other, check=True)).ok


async def test_the_service_role_builds_with_its_indexes_kept_up(fresh, monkeypatch):
    """The app role may not drop an index: the load goes on with the indexes in place."""
    d, pool, bus = fresh
    tenant = "t-" + uuid.uuid4().hex[:8]
    await seed(bus, tenant)
    await forget_projections(d)
    before = await indexes(d)
    seen = deferrals(monkeypatch)
    await rebuild_tenant(pool, tenant, owner=d.app)
    assert seen and all(got is None for _, got in seen)
    assert await indexes(d) == before
    assert (await rebuild_tenant(pool, tenant, check=True)).ok


async def test_a_busy_table_is_loaded_with_its_indexes(fresh, monkeypatch):
    """A session using a table (here: a transaction holding a lock on it) makes the load keep its
    indexes up instead of waiting for the exclusive lock."""
    d, pool, bus = fresh
    tenant = "t-" + uuid.uuid4().hex[:8]
    await seed(bus, tenant)
    await forget_projections(d)
    monkeypatch.setattr(bulk, "LOCK_TIMEOUT", "100ms")
    seen = deferrals(monkeypatch)
    async with pool.acquire() as holder:
        async with holder.transaction():
            await holder.execute("LOCK TABLE seat_intervals, licence_seats IN ROW SHARE MODE")
            rep = await rebuild_tenant(pool, tenant, owner=d.migrate)
    assert seen and all(got is None for _, got in seen) and "temporal_indexes" not in rep.phases
    assert (await rebuild_tenant(pool, tenant, check=True)).ok


@pytest.mark.parametrize("where", ["temporal", "inline"])
async def test_a_failed_load_keeps_every_index_and_writes_nothing(fresh, monkeypatch, where):
    d, pool, bus = fresh
    tenant = "t-" + uuid.uuid4().hex[:8]
    await seed(bus, tenant)
    await forget_projections(d)
    before = await indexes(d)

    async def fail(self, conn, tables=None):
        raise RuntimeError("the load failed")

    if where == "temporal":
        monkeypatch.setattr(tp, "set_checkpoint", lambda *a: fail(None, None))
    else:
        monkeypatch.setattr(bulk.Deferred, "build", fail)
    with pytest.raises(RuntimeError, match="the load failed"):
        await rebuild_tenant(pool, tenant, owner=d.migrate)
    assert await indexes(d) == before
    async with pool.acquire() as conn:
        group = ("seat_intervals", "temporal_pairs") if where == "temporal" else ("licence_seats", "scim_resources")
        for t in group:
            assert await conn.fetchval(f"SELECT count(*) FROM {t}") == 0, t
    monkeypatch.undo()
    monkeypatch.setattr(bulk, "BULK_ROWS", 1)
    monkeypatch.setattr(rb, "BULK_LOAD", 1)
    await rebuild_tenant(pool, tenant, owner=d.migrate)
    assert (await rebuild_tenant(pool, tenant, check=True)).ok
    assert await indexes(d) == before
