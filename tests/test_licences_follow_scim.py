"""Licences follow the directory: SCIM writes move seats in the same transaction."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from test_scim_http import GROUP_URN, PATCH_URN, USER_URN, Scim

NOW = datetime.now(timezone.utc)


async def admin(srv, tt, method, path, json=None):
    async with ClientSession() as s:
        async with s.request(method, str(srv.make_url(f"/v1/{tt['tenant']}{path}")), json=json,
                             headers={"Authorization": f"Bearer {tt['admin']}"}) as r:
            body = await r.json(content_type=None)
            assert r.status == 200, body
            return body


async def pool(srv, tt, seats, rules, policy="reject", grace=0):
    await admin(srv, tt, "POST", "/products", {"product_id": "design-pro", "name": "Design Pro"})
    await admin(srv, tt, "POST", "/pools", {
        "pool_id": "p1", "product_id": "design-pro", "seats": seats, "overage_policy": policy,
        "grace_seconds": grace, "term_start": (NOW - timedelta(days=1)).isoformat(),
        "term_end": (NOW + timedelta(days=365)).isoformat()})
    for r in rules:
        await admin(srv, tt, "POST", "/pools/p1/rules", r)


async def seat_of(srv, tt, uid):
    body = await admin(srv, tt, "GET", f"/users/{uid}/licences")
    return body["licences"][0]["state"] if body["licences"] else None


@pytest.fixture
async def scim(service, tenant_tokens):
    srv, _ = service
    async with ClientSession() as s:
        yield Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)


async def test_create_assigns_in_the_same_transaction_and_deactivation_frees(service, tenant_tokens, scim):
    srv, _ = service
    await pool(srv, tenant_tokens, 1, [{"rule_id": "all", "priority": 10, "kind": "all_active"}])
    a = await scim.create_user("ada")
    b = await scim.create_user("bob")
    assert await seat_of(srv, tenant_tokens, a["id"]) == "active"      # read-your-writes
    assert await seat_of(srv, tenant_tokens, b["id"]) == "waiting"
    st, _, _ = await scim.patch(f"/Users/{a['id']}", {"op": "Replace", "path": "active", "value": "False"})
    assert st in (200, 204)
    assert await seat_of(srv, tenant_tokens, a["id"]) is None
    assert await seat_of(srv, tenant_tokens, b["id"]) == "active"      # the freed seat, at once
    # reactivation: a asks again and waits (b holds the only seat)
    await scim.patch(f"/Users/{a['id']}", {"op": "replace", "value": {"active": True}})
    assert await seat_of(srv, tenant_tokens, a["id"]) == "waiting"
    # deletion ends b's seat and a gets it
    st, _, _ = await scim.req("DELETE", f"/Users/{b['id']}")
    assert st == 204
    assert await seat_of(srv, tenant_tokens, a["id"]) == "active"


async def test_group_rules_partial_deprovisioning(service, tenant_tokens, scim):
    srv, _ = service
    u = await scim.create_user("carol", **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                                           {"department": "Design"}})
    g1 = await scim.create_group("designers")
    g2 = await scim.create_group("contractors")
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    await pool(srv, tenant_tokens, 5, [
        {"rule_id": "g1", "priority": 10, "kind": "group", "group_id": g1["id"]},
        {"rule_id": "g2", "priority": 20, "kind": "group", "group_id": g2["id"]}])
    assert await seat_of(srv, tenant_tokens, u["id"]) is None
    await scim.patch(f"/Groups/{g1['id']}", {"op": "Add", "path": "members", "value": [{"value": u["id"], "$ref": None}]})
    assert await seat_of(srv, tenant_tokens, u["id"]) == "active"
    await scim.patch(f"/Groups/{g2['id']}", {"op": "add", "path": "members", "value": [{"value": u["id"]}]})
    await scim.patch(f"/Groups/{g1['id']}", {"op": "Remove", "path": f'members[value eq "{u["id"]}"]'})
    assert await seat_of(srv, tenant_tokens, u["id"]) == "active"       # g2 still grants it
    body = await admin(srv, tenant_tokens, "GET", f"/users/{u['id']}/licences")
    assert body["licences"][0]["grants"] == ["g2"]
    st, _, _ = await scim.req("DELETE", f"/Groups/{g2['id']}")
    assert st == 204
    assert await seat_of(srv, tenant_tokens, u["id"]) is None           # last granting group deleted
    del ent


async def test_filter_rule_follows_attribute_changes(service, tenant_tokens, scim):
    srv, _ = service
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    await pool(srv, tenant_tokens, 5, [{"rule_id": "design", "priority": 1, "kind": "filter",
                                        "filter": f'{ent}:department eq "Design"'}])
    u = await scim.create_user("dan", **{ent: {"department": "Sales"}})
    assert await seat_of(srv, tenant_tokens, u["id"]) is None
    await scim.patch(f"/Users/{u['id']}", {"op": "replace", "value": {f"{ent}:department": "design"}})
    assert await seat_of(srv, tenant_tokens, u["id"]) == "active"
    st, body, _ = await scim.req("PUT", f"/Users/{u['id']}", {"schemas": [USER_URN], "userName": "dan",
                                                              ent: {"department": "Sales"}})
    assert st == 200, body
    assert await seat_of(srv, tenant_tokens, u["id"]) is None


async def test_grace_period_suspends(service, tenant_tokens, scim):
    srv, _ = service
    await pool(srv, tenant_tokens, 1, [{"rule_id": "all", "priority": 1, "kind": "all_active"}], grace=3600)
    u = await scim.create_user("eve")
    await scim.patch(f"/Users/{u['id']}", {"op": "replace", "path": "active", "value": False})
    assert await seat_of(srv, tenant_tokens, u["id"]) == "suspended"
    async with ClientSession() as s:
        async with s.get(str(srv.make_url(f"/v1/{tenant_tokens['tenant']}/entitlements/{u['id']}?product=design-pro")),
                         headers={"Authorization": f"Bearer {tenant_tokens['entitlement']}"}) as r:
            body = await r.json()
    assert body["allowed"] is False and body["reason"] == "suspended"


async def test_hundred_parallel_creates_two_processes_ten_seats(service, tenant_tokens, dsns, store):
    """100 parallel SCIM creates against a 10-seat reject pool, through two service instances
    (separate command buses, as two processes would have) mixed with admin assigns and a resize."""
    from api.app import make_app
    from api.runtime import Runtime
    from ledger.executor import CommandBus
    srv, rt = service
    await pool(srv, tenant_tokens, 10, [{"rule_id": "all", "priority": 10, "kind": "all_active"}])
    rt2 = Runtime(rt.dsns, rt.pool, store, CommandBus(store))
    srv2 = TestServer(make_app(rt2), host="127.0.0.1")
    await srv2.start_server()
    try:
        async with ClientSession() as s:
            c1 = Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)
            c2 = Scim(srv2, tenant_tokens["tenant"], tenant_tokens["scim"], s)

            async def create(i):
                c = c1 if i % 2 else c2
                st, body, _ = await c.req("POST", "/Users", {"schemas": [USER_URN], "userName": f"user{i}"})
                assert st == 201, body
                return body["id"]

            async def resize_back_and_forth():
                await admin(srv, tenant_tokens, "POST", "/pools/p1/resize", {"seats": 12})
                await admin(srv2, tenant_tokens, "POST", "/pools/p1/resize", {"seats": 10})

            results = await asyncio.gather(*[create(i) for i in range(100)], resize_back_and_forth())
    finally:
        await srv2.close()
        await rt2.bus.close()
    ids = results[:100]
    held = await admin(srv, tenant_tokens, "GET", "/pools/p1/holders")
    waiting = await admin(srv, tenant_tokens, "GET", "/pools/p1/holders?state=waiting")
    assert len(held["items"]) == 10
    assert len(waiting["items"]) == 90
    assert {x["user_id"] for x in held["items"]} | {x["user_id"] for x in waiting["items"]} == set(ids)
