"""Contract tests for the event store against real PostgreSQL, run as the app role."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from ledger.events import NewEvent
from ledger.store import ConcurrencyError, StreamChange
from toy_domain import Noted, PersonNamed


def notes(*texts):
    return [NewEvent(Noted(text=t)) for t in texts]


async def test_append_and_read_stream(store, tenant):
    rec = await store.append(tenant, [StreamChange("s-1", 0, notes("a", "b"))], {"actor": "t", "source": "admin"})
    assert [r.seq for r in rec] == [1, 2]
    assert [r.stream_version for r in rec] == [1, 2]
    got = await store.read_stream(tenant, "s-1")
    assert [r.data["text"] for r in got] == ["a", "b"]
    assert got[0].metadata == {"actor": "t", "source": "admin"}
    assert got[0].decoded() == Noted(text="a")
    assert got[1].prev_hash == got[0].hash


async def test_append_is_atomic_across_streams(store, tenant):
    await store.append(tenant, [StreamChange("a", 0, notes("a1"))])
    with pytest.raises(ConcurrencyError) as e:
        await store.append(tenant, [StreamChange("b", 0, notes("b1")), StreamChange("a", 0, notes("a2"))])
    assert e.value.actual == 1
    assert await store.read_stream(tenant, "b") == []
    rec = await store.append(tenant, [StreamChange("b", 0, notes("b1")), StreamChange("a", 1, notes("a2"))])
    assert [(r.stream, r.stream_version, r.seq) for r in rec] == [("b", 1, 2), ("a", 2, 3)]


async def test_recorded_time_monotonic_and_seq_gapless(store, tenant):
    for i in range(5):
        await store.append(tenant, [StreamChange(f"s{i}", None, notes(str(i)))])
    evs = await store.read_tenant(tenant)
    assert [e.seq for e in evs] == [1, 2, 3, 4, 5]
    times = [e.recorded_at for e in evs]
    assert times == sorted(times)


async def test_effective_time_may_lie_in_past_or_future(store, tenant):
    past = datetime(2026, 1, 3, tzinfo=timezone.utc)
    fut = datetime.now(timezone.utc) + timedelta(days=30)
    await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text="c"), effective_at=past),
                                                         NewEvent(Noted(text="f"), effective_at=fut)])])
    evs = await store.read_stream(tenant, "s")
    assert evs[0].effective_at == past and evs[1].effective_at == fut
    assert evs[0].recorded_at == evs[1].recorded_at > past


async def test_natural_idempotency_key_is_unique(store, tenant):
    await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text="x"), idempotency_key="exp:1")])])
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text="x"), idempotency_key="exp:1")])])
    assert len(await store.read_stream(tenant, "s")) == 1


async def test_concurrent_appends_to_one_stream_one_wins(store, tenant):
    await store.append(tenant, [StreamChange("race", 0, notes("init"))])
    results = await asyncio.gather(*[store.append(tenant, [StreamChange("race", 1, notes(f"w{i}"))])
                                     for i in range(8)], return_exceptions=True)
    ok = [r for r in results if not isinstance(r, Exception)]
    assert len(ok) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, Exception))


@pytest.mark.parametrize("sql", [
    "UPDATE events SET type = 'x' WHERE tenant_id = $1",
    "DELETE FROM events WHERE tenant_id = $1",
])
async def test_app_role_cannot_update_or_delete(app_pool, store, tenant, sql):
    await store.append(tenant, [StreamChange("s", None, notes("x"))])
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "seatledger_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql, tenant)
    assert len(await store.read_stream(tenant, "s")) == 1


async def test_app_role_cannot_truncate(app_pool):
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE events")


@pytest.mark.parametrize("sql", [
    "UPDATE events SET data = '{}' WHERE tenant_id = $1",
    "DELETE FROM events WHERE tenant_id = $1",
])
async def test_even_the_owner_is_refused_by_trigger(pg_pool, store, tenant, sql):
    await store.append(tenant, [StreamChange("s", None, notes("x"))])
    async with pg_pool.acquire() as conn:
        with pytest.raises(asyncpg.PostgresError, match="immutable"):
            await conn.execute(sql, tenant)
        with pytest.raises(asyncpg.PostgresError, match="immutable"):
            await conn.execute("TRUNCATE events")


async def test_personal_fields_are_encrypted_in_the_ledger(store, pg_pool, tenant):
    ev = PersonNamed(person="u1", email="ada@example.com", display="Ada", role="admin")
    await store.append(tenant, [StreamChange("user-u1", 0, [NewEvent(ev)])])
    async with pg_pool.acquire() as conn:
        raw = await conn.fetchrow("SELECT data::text AS d, canonical FROM events WHERE tenant_id = $1", tenant)
    assert "ada@example.com" not in raw["d"] and b"ada@example.com" not in bytes(raw["canonical"])
    assert '"role": "admin"' in raw["d"]
    got = (await store.read_stream(tenant, "user-u1"))[0]
    assert got.data["email"] == "ada@example.com" and not got.erased
    assert got.decoded() == ev


@pytest.mark.parametrize("metadata", [{"actor": "a", "weight": 1.5}, {"actor": {"scores": [1, 2.0]}},
                                      {"actor": "a", 3: "x"}, {"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}])
async def test_metadata_that_is_not_canonical_is_refused_and_nothing_written(store, tenant, metadata):
    # metadata is checked once per command (flat objects of leaves take a fast path): anything the
    # canonical encoding does not allow - floats, non-string keys, other types, nested or not - is refused
    with pytest.raises(ValueError):
        await store.append(tenant, [StreamChange("note-1", 0, [NewEvent(Noted(text="x"))])], metadata)
    assert await store.read_stream(tenant, "note-1") == []
