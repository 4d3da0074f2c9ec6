"""The entitlement check answered from a tenant's in-memory table (api/entitlement_table.py): the
same answers as the database path, a revocation effective at once in the process that wrote it and
within 1 s from another process (NOTIFY), within 1 s even with NOTIFY down (the head verifier), and
term ends at their exact instant from memory too."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import ClientSession

from api.licences_http import ENTITLEMENT_TABLES
from ledger.executor import CommandBus
from ledger.licence_admin import AddRule, AdminAssign, AdminRevoke, CreatePool, DefineProduct
from service import serving
from tenants import tenant_with_tokens
from test_scim_http import Scim


@pytest.fixture
async def server(dsns, app_pool, store):
    async with serving(dsns, app_pool, store) as running:
        yield running


async def _check(s, srv, tt, who, product="design-pro"):
    async with s.get(str(srv.make_url(f"/v1/{tt['tenant']}/entitlements/{who}?product={product}")),
                     headers={"Authorization": f"Bearer {tt['entitlement']}"}) as r:
        assert r.status == 200
        body = await r.json()
    body.pop("checked_at")
    return body


async def _from_memory(s, srv, tt, who, product="design-pro"):
    """The answer once the table is loaded and used (the first checks load it)."""
    tables = srv.app[ENTITLEMENT_TABLES]
    for _ in range(200):
        hits = tables.hits
        body = await _check(s, srv, tt, who, product)
        if tables.hits > hits:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError("the table was never used")


async def _pool(rt, tenant, seats=5, term_end=None):
    now = datetime.now(timezone.utc)
    await rt.bus.execute(tenant, DefineProduct("design-pro", "Design Pro"))
    await rt.bus.execute(tenant, CreatePool("p1", "design-pro", seats, now - timedelta(days=1),
                                            term_end or now + timedelta(days=30)))


async def test_memory_answers_equal_the_database_and_revocations_take_effect(server, tenant, store):
    srv, rt = server
    tt = await tenant_with_tokens(rt, tenant)
    await _pool(rt, tenant)
    await rt.bus.execute(tenant, AddRule("p1", "all", 10, "all_active"))
    async with ClientSession() as s:
        scim = Scim(srv, tenant, tt["scim"], s)
        ada = await scim.create_user("Ada@Example.com")
        bob = await scim.create_user("bob@example.com", active=False)
        expected = {}
        for who in (ada["id"], "ada@example.COM", bob["id"], "bob@example.com", "nobody", ada["id"] + "x"):
            expected[who] = await _check(s, srv, tt, who)          # database path (no table yet)
        assert expected[ada["id"]]["allowed"] and expected["ada@example.COM"]["allowed"]
        assert not expected[bob["id"]]["allowed"] and expected["nobody"]["reason"] == "no_licence"
        await _from_memory(s, srv, tt, ada["id"])
        for who, body in expected.items():
            assert await _from_memory(s, srv, tt, who) == body, who
        assert await _from_memory(s, srv, tt, ada["id"], "other-product") == \
            {**expected["nobody"], "product": "other-product"}

        # revoked by this process: the very next check says no (the table went stale at the commit)
        st, _, _ = await scim.patch(f"/Users/{ada['id']}", {"op": "replace", "path": "active", "value": False})
        assert st == 200
        body = await _check(s, srv, tt, ada["id"])
        assert body["allowed"] is False

        # granted then revoked by another process (its own command bus): NOTIFY, within 1 s
        other = CommandBus(store)
        try:
            await other.execute(tenant, AdminAssign("p1", bob["id"]))
            await _from_memory(s, srv, tt, "nobody")     # quiet again: a fresh table is in use
            t0 = time.monotonic()
            await other.execute(tenant, AdminRevoke("p1", bob["id"]))
            while (await _check(s, srv, tt, bob["id"]))["allowed"]:
                assert time.monotonic() - t0 < 1.0, "a revocation by another process took over 1 s"
                await asyncio.sleep(0.005)
        finally:
            await other.close()


async def test_without_notify_a_revocation_still_takes_effect_within_a_second(server, tenant, store):
    srv, rt = server
    tt = await tenant_with_tokens(rt, tenant)
    await _pool(rt, tenant)
    async with ClientSession() as s:
        scim = Scim(srv, tenant, tt["scim"], s)
        ada = await scim.create_user("ada@example.com")
        other = CommandBus(store)
        try:
            await other.execute(tenant, AdminAssign("p1", ada["id"]))
            assert (await _from_memory(s, srv, tt, ada["id"]))["allowed"]
            # the LISTEN connection goes quiet (as if it were down): only the head verifier is left
            notifier = srv.app[ENTITLEMENT_TABLES].notifier
            await notifier.conn.remove_listener("seatledger_events", notifier._on_notify)
            t0 = time.monotonic()
            await other.execute(tenant, AdminRevoke("p1", ada["id"]))
            while (await _check(s, srv, tt, ada["id"]))["allowed"]:
                assert time.monotonic() - t0 < 1.0, "stale for over 1 s without NOTIFY"
                await asyncio.sleep(0.01)
        finally:
            await other.close()


async def test_a_term_ends_at_its_exact_instant_from_memory(server, tenant):
    srv, rt = server
    tt = await tenant_with_tokens(rt, tenant)
    end = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    await _pool(rt, tenant, term_end=end)
    await rt.bus.execute(tenant, AddRule("p1", "all", 10, "all_active"))
    async with ClientSession() as s:
        ada = await Scim(srv, tenant, tt["scim"], s).create_user("ada@example.com")
        before = await _from_memory(s, srv, tt, ada["id"])
        assert before["allowed"] is True and before["until"] == end.isoformat()
        await asyncio.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 0.01)
        after = await _from_memory(s, srv, tt, ada["id"])       # nothing was committed: still memory
        assert after["allowed"] is False and after["reason"] == "expired"
