"""Rebuild: projections from the events, compared with the live tables; a corrupted row is named by
--check and repaired by rebuild; the CLI does the same."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

import pytest

from ledger.directory import USER_RS, CreateUser
from ledger.events import NewEvent
from ledger.replay import USER_URN
from ledger.scim.resource import normalize
from ledger.licence_admin import AddRule, AdminAssign, CorrectSeatStart
from ledger.licences import SeatReleased
from ledger.store import StreamChange
from projections import temporal as tp
from projections.rebuild import rebuild_tenant
from test_licence_admin import setup_pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def add_users(bus, tenant, ids):
    """Users created through the directory's commands: the rebuild folds the directory from events too."""
    for u in ids:
        await bus.execute(tenant, CreateUser(u, normalize({"schemas": [USER_URN], "userName": u}, USER_RS)))


async def seeded(bus, pg_pool, store, tenant):
    await add_users(bus, tenant, ("a", "b", "c", "d"))
    await setup_pool(bus, tenant, 3)
    await bus.execute(tenant, AddRule("p1", "everyone", 10, "all_active"))     # a, b, c hold; d waits
    await asyncio.sleep(0.01)
    mid = datetime.now(timezone.utc)
    await asyncio.sleep(0.01)
    await bus.execute(tenant, AdminAssign("p1", "d"))
    # a backdated correction appended directly: c's seat really ended at `mid`
    await store.append(tenant, [StreamChange("pool-p1", None, [NewEvent(
        SeatReleased(pool_id="p1", user_id="c", reason="admin"), mid)])])


def _diff_tables(rep):
    return {t.table: t for t in rep.tables if not t.ok}


async def test_rebuild_finds_and_repairs_a_corrupted_row(bus, pg_pool, app_pool, store, tenant):
    await seeded(bus, pg_pool, store, tenant)
    await tp.ensure_current(app_pool, tenant)
    # the correction was appended beside the write path: the inline licence projection missed it
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    bad = _diff_tables(rep)
    assert set(bad) == {"licence_seats", "licence_pools"}
    assert [d["key"] for d in bad["licence_seats"].differences] == [{"pool_id": "p1", "user_id": "c"}]
    assert bad["licence_seats"].differences[0]["rebuilt"] is None
    assert (await rebuild_tenant(app_pool, tenant)).swapped
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    assert rep.ok, [(t.table, t.differences) for t in rep.tables if not t.ok]
    assert rep.events > 0 and {t.table for t in rep.tables} >= {"licence_seats", "licence_pools", "seat_intervals"}

    async with pg_pool.acquire() as conn:
        user = await conn.fetchval("SELECT user_id FROM licence_seats WHERE tenant_id = $1 AND state = 'active' "
                                   "ORDER BY user_id LIMIT 1", tenant)
        await conn.execute("UPDATE licence_seats SET priority = 99 WHERE tenant_id = $1 AND user_id = $2",
                           tenant, user)
        await conn.execute("UPDATE seat_intervals SET grants = '{forged}' WHERE tenant_id = $1 AND user_id = 'b' "
                           "AND upper_inf(known)", tenant)
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    bad = _diff_tables(rep)
    assert set(bad) == {"licence_seats", "seat_intervals"} and not rep.swapped
    assert bad["licence_seats"].differences == [{
        "key": {"pool_id": "p1", "user_id": user},
        "live": bad["licence_seats"].differences[0]["live"],
        "rebuilt": bad["licence_seats"].differences[0]["rebuilt"]}]
    assert bad["licence_seats"].differences[0]["live"][2] == 99
    assert bad["licence_seats"].differences[0]["rebuilt"][2] != 99
    forged = [d for d in bad["seat_intervals"].differences if d["live"] is not None]
    assert forged and all(d["live"][2] == ["forged"] and d["rebuilt"][2] != ["forged"] and d["key"]["user_id"] == "b"
                          for d in forged)
    async with pg_pool.acquire() as conn:   # --check changed nothing
        assert await conn.fetchval("SELECT priority FROM licence_seats WHERE tenant_id = $1 AND user_id = $2",
                                   tenant, user) == 99

    rep = await rebuild_tenant(app_pool, tenant)
    assert rep.swapped and set(_diff_tables(rep)) == {"licence_seats", "seat_intervals"}
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    assert rep.ok
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT priority FROM licence_seats WHERE tenant_id = $1 AND user_id = $2",
                                   tenant, user) != 99


@contextlib.contextmanager
def writes_before_the_lock(write):
    """Another writer commits between the rebuild's fold and its swap: within this block, `write()`
    runs as the rebuild takes the tenant lock."""
    import projections.rebuild as rb
    real = rb.lock_head

    async def write_then_lock(conn, t):
        await write()
        return await real(conn, t)

    rb.lock_head = write_then_lock
    try:
        yield
    finally:
        rb.lock_head = real


@pytest.mark.parametrize("first_build", [False, True])
async def test_rebuild_catches_up_writes_made_meanwhile(bus, pg_pool, app_pool, store, tenant, first_build,
                                                        monkeypatch):
    """Events committed after the rebuild read its head are folded under the lock before the swap -
    also on a first build (inline tables empty: the lock is taken beside the temporal group's work)."""
    import projections.rebuild as rb
    await seeded(bus, pg_pool, store, tenant)
    await rebuild_tenant(app_pool, tenant)
    if first_build:
        monkeypatch.setattr(rb, "BULK_LOAD", 1)     # a few rows count as a bulk load here
        async with pg_pool.acquire() as conn:
            for t in ("licence_seats", "scim_resources"):
                await conn.execute(f"DELETE FROM {t} WHERE tenant_id = $1", tenant)

    async def write():
        await add_users(bus, tenant, ("e",))
        await bus.execute(tenant, AdminAssign("p1", "e"))

    with writes_before_the_lock(write):
        rep = await rebuild_tenant(app_pool, tenant)
    assert rep.ok != first_build and rep.head > rep.events
    if first_build:
        assert {t.table for t in rep.tables if not t.ok} >= {"licence_seats", "scim_resources"}
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM licence_seats WHERE tenant_id = $1 AND user_id = 'e'",
                                   tenant) in ("active", "waiting")
    after = await rebuild_tenant(app_pool, tenant, check=True)
    assert after.ok, [(t.table, t.differences) for t in after.tables if not t.ok]


async def test_a_first_build_counts_its_rows_without_hashing_them(bus, pg_pool, app_pool, store, tenant,
                                                                  monkeypatch):
    """A table that was empty is reported with its rows counted and listed, and no digest: there is
    nothing to compare one with (`--check` afterwards hashes both sides)."""
    import projections.rebuild as rb
    await seeded(bus, pg_pool, store, tenant)
    await rebuild_tenant(app_pool, tenant)
    monkeypatch.setattr(rb, "BULK_LOAD", 1)
    async with pg_pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM licence_seats WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM licence_seats WHERE tenant_id = $1", tenant)
    rep = await rebuild_tenant(app_pool, tenant)
    seats = next(t for t in rep.tables if t.table == "licence_seats")
    assert n > 0 and not seats.ok and rep.swapped
    assert (seats.live_rows, seats.rebuilt_rows, seats.live_digest, seats.rebuilt_digest) == \
        (0, n, "0:0", f"{n}:first build")
    assert len(seats.differences) == n and all(d["live"] is None for d in seats.differences)
    assert all(t.ok for t in rep.tables if t.table != "licence_seats")
    after = await rebuild_tenant(app_pool, tenant, check=True)
    assert after.ok and next(t for t in after.tables if t.table == "licence_seats").rebuilt_rows == n


@pytest.mark.parametrize("first_build", [False, True])
async def test_a_corrected_seat_start_rebuilds_as_the_write_path_wrote_it(bus, pg_pool, app_pool, store, tenant,
                                                                          first_build, monkeypatch):
    """A seat whose start was corrected goes through `evolve` in the rebuild's fold and holds datetimes,
    the others integer microseconds: both reach COPY as the live projection holds them."""
    import projections.rebuild as rb
    await seeded(bus, pg_pool, store, tenant)
    await rebuild_tenant(app_pool, tenant)          # the seeded correction, appended behind the bus, projected
    async with pg_pool.acquire() as conn:
        since = await conn.fetchval("SELECT since FROM licence_seats WHERE tenant_id = $1 AND user_id = 'a'", tenant)
    await bus.execute(tenant, CorrectSeatStart("p1", "a", since - timedelta(milliseconds=1)))
    async with pg_pool.acquire() as conn:
        live = await conn.fetch("SELECT user_id, since, requested_at, suspended_until FROM licence_seats "
                                "WHERE tenant_id = $1 ORDER BY user_id", tenant)
        if first_build:
            monkeypatch.setattr(rb, "BULK_LOAD", 1)
            await conn.execute("DELETE FROM licence_seats WHERE tenant_id = $1", tenant)
    assert live[0]["since"] == since - timedelta(milliseconds=1)
    await tp.ensure_current(app_pool, tenant)       # the temporal tables caught up: the check compares all
    rep = await rebuild_tenant(app_pool, tenant, check=not first_build)
    assert rep.ok != first_build, [(t.table, t.differences) for t in rep.tables if not t.ok]
    async with pg_pool.acquire() as conn:
        assert await conn.fetch("SELECT user_id, since, requested_at, suspended_until FROM licence_seats "
                                "WHERE tenant_id = $1 ORDER BY user_id", tenant) == live
    assert (await rebuild_tenant(app_pool, tenant, check=True)).ok


async def test_temporal_tail_written_while_the_rows_were_staged(bus, pg_pool, app_pool, store, tenant):
    """Temporal rows are staged as of the head read before the temporal lock; seat events committed
    meanwhile - an assignment, a release, a backdated release that refolds a pair - are fed under the
    lock and only the pairs they touch restaged: the rebuilt temporal tables equal the caught-up live
    ones."""
    import projections.rebuild as rb
    await seeded(bus, pg_pool, store, tenant)
    await add_users(bus, tenant, ("e",))
    await rebuild_tenant(app_pool, tenant)
    real, wrote = rb.tp.lock, []

    async def write_then_lock(conn, t):
        if not wrote:
            wrote.append(True)
            await bus.execute(tenant, AdminAssign("p1", "e"))
            # appended beside the inline projection: b's seat ends now; a release of a's effective an
            # hour ago, before a's assignment (a refold of the pair that changes nothing)
            await store.append(tenant, [StreamChange("pool-p1", None, [
                NewEvent(SeatReleased(pool_id="p1", user_id="b", reason="admin")),
                NewEvent(SeatReleased(pool_id="p1", user_id="a", reason="admin"),
                         datetime.now(timezone.utc) - timedelta(hours=1))])])
        return await real(conn, t)

    rb.tp.lock = write_then_lock
    try:
        rep = await rebuild_tenant(app_pool, tenant)
    finally:
        rb.tp.lock = real
    assert wrote and rep.head > rep.events
    temporal = {t.name for t in rb.TEMPORAL_TABLES}
    assert not {t.table for t in rep.tables if not t.ok} & temporal, \
        [(t.table, t.differences) for t in rep.tables if not t.ok and t.table in temporal]
    # (the licence tables may miss the releases appended beside the write path after their swap)
    after = await rebuild_tenant(app_pool, tenant, check=True)
    assert all(t.ok for t in after.tables if t.table in temporal), \
        [(t.table, t.differences) for t in after.tables if not t.ok]
    async with app_pool.acquire() as conn:
        believed = "SELECT count(*) FROM seat_intervals WHERE tenant_id = $1 AND user_id = $2 AND upper_inf(known)"
        assert await conn.fetchval(believed, tenant, "e") >= 1
        assert await conn.fetchval(believed + " AND upper_inf(valid)", tenant, "b") == 0
        assert await conn.fetchval(believed + " AND upper_inf(valid)", tenant, "a") == 1


@pytest.fixture(scope="module")
def cli_env(dsns):
    if dsns.embedded:
        from urllib.parse import urlsplit
        return {"SEATLEDGER_DATABASE": urlsplit(dsns.migrate).path.lstrip("/")}
    return {"SEATLEDGER_DATABASE_URL": dsns.migrate}


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


async def test_cli_rebuild_check_and_holders(bus, pg_pool, app_pool, store, tenant, cli_env):
    await seeded(bus, pg_pool, store, tenant)
    await rebuild_tenant(app_pool, tenant)
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM licence_seats WHERE tenant_id = $1 AND user_id = 'd'", tenant)
    p = cli("rebuild", "--tenant", tenant, "--check", env=cli_env)
    assert p.returncode == 1, p.stderr
    assert "licence_seats" in p.stdout and "DIFFERS" in p.stdout and '"user_id":"d"' in p.stdout
    p = cli("rebuild", "--tenant", tenant, env=cli_env)
    assert p.returncode == 0 and "REPAIRED" in p.stdout, p.stdout + p.stderr
    p = cli("rebuild", "--tenant", tenant, "--check", env=cli_env)
    assert p.returncode == 0, p.stdout
    at = datetime.now(timezone.utc).isoformat()   # after the seeding, however long the suite took
    p = cli("holders", "--tenant", tenant, "--pool", "p1", "--as-of", at, env=cli_env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert sorted(h["user_id"] for h in out["holders"]) == ["a", "b"] and out["total"] == 2
    p = cli("holders", "--tenant", tenant, "--product", "design-pro", "--as-of", at, "--known-at", "3",
            env=cli_env)
    assert p.returncode == 0 and json.loads(p.stdout)["total"] == 0, p.stderr
