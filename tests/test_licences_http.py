"""Licence admin API and entitlement checks over real HTTP."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from aiohttp import ClientSession

from test_licence_admin import add_users

NOW = datetime.now(timezone.utc)


async def call(srv, method, path, token, json=None):
    async with ClientSession() as s:
        async with s.request(method, str(srv.make_url(path)), json=json,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json(content_type=None)


async def setup(srv, tt, seats=1, term_end=None):
    t, admin = tt["tenant"], tt["admin"]
    assert (await call(srv, "POST", f"/v1/{t}/products", admin, {"product_id": "design-pro", "name": "Design"}))[0] == 200
    st, body = await call(srv, "POST", f"/v1/{t}/pools", admin, {
        "pool_id": "p1", "product_id": "design-pro", "seats": seats,
        "term_start": (NOW - timedelta(days=1)).isoformat(),
        "term_end": (term_end or NOW + timedelta(days=365)).isoformat(), "price_minor": 1000})
    assert st == 200, body


async def test_admin_flow_and_entitlement(service, tenant_tokens, pg_pool):
    srv, _ = service
    t, admin, ent = tenant_tokens["tenant"], tenant_tokens["admin"], tenant_tokens["entitlement"]
    await add_users(pg_pool, t, {"u1": {"userName": "Ada@Example.com"}, "u2": {}})
    await setup(srv, tenant_tokens, seats=1)
    st, body = await call(srv, "POST", f"/v1/{t}/pools/p1/rules", admin, {"rule_id": "all", "priority": 5,
                                                                         "kind": "all_active"})
    assert st == 200, body
    st, body = await call(srv, "GET", f"/v1/{t}/pools", admin)
    assert body["pools"][0]["held"] == 1 and body["pools"][0]["waiting"] == 1
    st, active = await call(srv, "GET", f"/v1/{t}/pools/p1/holders", admin)
    st, waiting = await call(srv, "GET", f"/v1/{t}/pools/p1/holders?state=waiting", admin)
    holder, waiter = active["items"][0]["user_id"], waiting["items"][0]["user_id"]
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/{holder}?product=design-pro", ent)
    assert st == 200 and body["allowed"] is True and body["pool"] == "p1"
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/{waiter}?product=design-pro", ent)
    assert body["allowed"] is False and body["reason"] == "waiting"
    # by userName, case-insensitively
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/ada@EXAMPLE.com?product=design-pro", ent)
    assert body["user_id"] == "u1"
    st, body = await call(srv, "GET", f"/v1/{t}/users/{holder}/licences", admin)
    assert body["licences"][0]["state"] == "active"
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/nobody?product=design-pro", ent)
    assert body == {**body, "allowed": False, "reason": "no_licence"}


async def test_entitlement_false_at_the_exact_expiry_without_scheduler(service, tenant_tokens, pg_pool):
    srv, _ = service
    t, admin, ent = tenant_tokens["tenant"], tenant_tokens["admin"], tenant_tokens["entitlement"]
    await add_users(pg_pool, t, {"u1": {}})
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    await setup(srv, tenant_tokens, seats=1, term_end=end)
    await call(srv, "POST", f"/v1/{t}/pools/p1/assignments", admin, {"user_id": "u1"})
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/u1?product=design-pro", ent)
    assert body["allowed"] is True and body["until"] == end.isoformat()
    await asyncio.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    st, body = await call(srv, "GET", f"/v1/{t}/entitlements/u1?product=design-pro", ent)
    assert body["allowed"] is False and body["reason"] == "expired"


async def test_scheduled_downsize_applies_at_read_time(service, tenant_tokens, pg_pool):
    srv, _ = service
    t, admin, ent = tenant_tokens["tenant"], tenant_tokens["admin"], tenant_tokens["entitlement"]
    await add_users(pg_pool, t, {"a": {}, "b": {}})
    await setup(srv, tenant_tokens, seats=2)
    await call(srv, "POST", f"/v1/{t}/pools/p1/assignments", admin, {"user_id": "a"})
    await call(srv, "POST", f"/v1/{t}/pools/p1/assignments", admin, {"user_id": "b"})
    at = datetime.now(timezone.utc) + timedelta(seconds=1)
    st, body = await call(srv, "POST", f"/v1/{t}/pools/p1/resize", admin, {"seats": 1, "effective_at": at.isoformat()})
    assert st == 200, body
    assert (await call(srv, "GET", f"/v1/{t}/entitlements/b?product=design-pro", ent))[1]["allowed"] is True
    await asyncio.sleep(1.1)
    assert (await call(srv, "GET", f"/v1/{t}/entitlements/b?product=design-pro", ent))[1]["reason"] == "downsized"
    assert (await call(srv, "GET", f"/v1/{t}/entitlements/a?product=design-pro", ent))[1]["allowed"] is True


async def test_validation_errors_name_the_field(service, tenant_tokens):
    srv, _ = service
    t, admin = tenant_tokens["tenant"], tenant_tokens["admin"]
    await call(srv, "POST", f"/v1/{t}/products", admin, {"product_id": "x", "name": "X"})
    base = {"pool_id": "p1", "product_id": "x", "seats": 1, "term_start": NOW.isoformat(),
            "term_end": (NOW + timedelta(days=1)).isoformat()}
    for patch, field in [({"seats": -1}, "seats"), ({"seats": "many"}, "seats"), ({"term_end": "soon"}, "term_end"),
                         ({"colour": "red"}, "colour"), ({"overage_policy": "maybe"}, "overage_policy"),
                         ({"term_start": "2026-01-01T00:00:00"}, "term_start")]:
        st, body = await call(srv, "POST", f"/v1/{t}/pools", admin, {**base, **patch})
        assert st == 400 and body["field"] == field, (patch, body)
    async with ClientSession() as s:
        async with s.post(str(srv.make_url(f"/v1/{t}/pools")), data=b"{nope",
                          headers={"Authorization": f"Bearer {admin}"}) as r:
            assert r.status == 400
    st, body = await call(srv, "POST", f"/v1/{t}/pools/nope/resize", admin, {"seats": 3})
    assert st == 404


async def test_scopes(service, tenant_tokens):
    srv, _ = service
    t = tenant_tokens["tenant"]
    assert (await call(srv, "GET", f"/v1/{t}/pools", tenant_tokens["scim"]))[0] == 403
    assert (await call(srv, "POST", f"/v1/{t}/products", tenant_tokens["entitlement"], {"product_id": "a", "name": "b"}))[0] == 403
    assert (await call(srv, "GET", f"/v1/{t}/entitlements/u?product=x", tenant_tokens["billing"]))[0] == 403
    assert (await call(srv, "GET", f"/v1/{t}/pools", tenant_tokens["auditor"]))[0] == 200


async def test_correction_over_http_names_the_full_instant(service, tenant_tokens, pg_pool):
    srv, _ = service
    t, admin = tenant_tokens["tenant"], tenant_tokens["admin"]
    await add_users(pg_pool, t, {"a": {}, "b": {}})
    await setup(srv, tenant_tokens, seats=1)
    await call(srv, "POST", f"/v1/{t}/pools/p1/assignments", admin, {"user_id": "a"})
    await call(srv, "DELETE", f"/v1/{t}/pools/p1/assignments/a", admin)
    await call(srv, "POST", f"/v1/{t}/pools/p1/assignments", admin, {"user_id": "b"})
    st, body = await call(srv, "POST", f"/v1/{t}/pools/p1/corrections", admin,
                          {"user_id": "b", "started_at": (NOW - timedelta(hours=1)).isoformat()})
    assert st == 409 and "instant" in body, body
    st, body = await call(srv, "POST", f"/v1/{t}/pools/p1/corrections", admin, {"user_id": "b"})
    assert st == 400 and body["field"] == "ended_at"
