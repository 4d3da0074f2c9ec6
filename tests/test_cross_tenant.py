"""Cross-tenant probes: a tenant's own, valid tokens, on its own paths, naming another tenant's
objects by their ids. Nothing of the other tenant is read, linked or changed, and the answers
are the same as for an id that exists nowhere (no oracle)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import ClientSession

from tenants import tenant_with_tokens
from test_scim_http import GROUP_URN, Scim

NOW = datetime.now(timezone.utc)


@pytest.fixture
async def two(service, tenant):
    srv, rt = service
    a = await tenant_with_tokens(rt, tenant + "-a")
    b = await tenant_with_tokens(rt, tenant + "-b")
    async with ClientSession() as s:
        yield srv, s, a, b


async def _call(s, srv, tok, scope, method, path, body=None):
    async with s.request(method, str(srv.make_url(f"/v1/{tok['tenant']}{path}")), json=body,
                         headers={"Authorization": f"Bearer {tok[scope]}"}) as r:
        return r.status, await r.json(content_type=None)


async def _events(store, tenant):
    return len(await store.read_tenant(tenant, 0, 100_000))


async def test_scim_ids_of_another_tenant_are_unknown(two, store):
    srv, s, a, b = two
    sa, sb = Scim(srv, a["tenant"], a["scim"], s), Scim(srv, b["tenant"], b["scim"], s)
    bob = await sb.create_user("bob@b.example")
    bgroup = await sb.create_group("b-staff", [bob["id"]])
    agroup = await sa.create_group("a-staff")
    nowhere = str(uuid.uuid4())
    b_before = await _events(store, b["tenant"])

    for other, none in ((f"/Users/{bob['id']}", f"/Users/{nowhere}"),
                        (f"/Groups/{bgroup['id']}", f"/Groups/{nowhere}")):
        for method, body in (("GET", None), ("DELETE", None),
                             ("PUT", {"schemas": [GROUP_URN], "displayName": "x", "userName": "x"})):
            st_other, body_other, _ = await sa.req(method, other, body)
            st_none, body_none, _ = await sa.req(method, none, body)
            assert st_other == st_none == 404, (method, other, body_other)
            assert body_other["detail"].replace(other.split("/")[-1], "?") == \
                body_none["detail"].replace(none.split("/")[-1], "?")
        st, _, _ = await sa.patch(other, {"op": "replace", "path": "displayName", "value": "hijacked"})
        assert st == 404

    # B's user as a member of A's group: refused, nothing linked, on create as on PATCH
    st, body, _ = await sa.patch(f"/Groups/{agroup['id']}", {"op": "add", "path": "members",
                                                             "value": [{"value": bob["id"]}]})
    assert 400 <= st < 500 and st != 403, body
    st, body, _ = await sa.req("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "a-two",
                                                   "members": [{"value": bob["id"]}]})
    assert 400 <= st < 500, body
    st, body, _ = await sa.req("GET", f"/Groups/{agroup['id']}")
    assert not body.get("members")

    # filters see only the tenant's own resources
    for f in (f'id eq "{bob["id"]}"', 'userName eq "bob@b.example"', f'members.value eq "{bob["id"]}"'):
        path = "/Groups" if f.startswith("members") else "/Users"
        body = await sa.list(path, filter=f)
        assert body["totalResults"] == 0, f

    # B is untouched, and still sees its own
    assert await _events(store, b["tenant"]) == b_before
    st, body, _ = await sb.req("GET", f"/Groups/{bgroup['id']}")
    assert st == 200 and body["displayName"] == "b-staff" and [m["value"] for m in body["members"]] == [bob["id"]]


async def test_licence_and_audit_apis_do_not_reach_another_tenant(two, store):
    srv, s, a, b = two
    sb = Scim(srv, b["tenant"], b["scim"], s)
    bob = await sb.create_user("bob@b.example")
    for tok in (a, b):
        assert (await _call(s, srv, tok, "admin", "POST", "/products",
                            {"product_id": "design-pro", "name": "Design Pro"}))[0] == 200
        assert (await _call(s, srv, tok, "admin", "POST", "/pools", {
            "pool_id": "p1", "product_id": "design-pro", "seats": 5,
            "term_start": (NOW - timedelta(days=1)).isoformat(),
            "term_end": (NOW + timedelta(days=30)).isoformat()}))[0] == 200
    assert (await _call(s, srv, b, "admin", "POST", "/pools/p1/rules",
                        {"rule_id": "all", "priority": 1, "kind": "all_active"}))[0] == 200
    b_before = await _events(store, b["tenant"])

    # A's admin cannot hand A's seat to B's user, nor see B's user's licences
    st, body = await _call(s, srv, a, "admin", "POST", "/pools/p1/assignments", {"user_id": bob["id"]})
    assert st == 404, body
    st, body = await _call(s, srv, a, "admin", "GET", f"/users/{bob['id']}/licences")
    assert st in (200, 404) and not body.get("licences"), body
    # the entitlement check of A says nothing about B's user (B's user does hold design-pro in B)
    st, body = await _call(s, srv, a, "entitlement", "GET", f"/entitlements/{bob['id']}?product=design-pro")
    assert not (st == 200 and body.get("allowed")), body
    st, body = await _call(s, srv, b, "entitlement", "GET", f"/entitlements/{bob['id']}?product=design-pro")
    assert st == 200 and body["allowed"] is True, body
    # history of A knows nothing of B's user
    st, body = await _call(s, srv, a, "auditor", "GET", f"/history/users/{bob['id']}")
    assert st == 404, body
    st, body = await _call(s, srv, a, "auditor", "GET", f"/history/users/{bob['id']}/licences")
    assert st in (200, 404) and not body.get("licences"), body
    # A's pool holders never list B's user
    st, body = await _call(s, srv, a, "admin", "GET", "/pools/p1/holders")
    assert st == 200 and body["items"] == []
    assert await _events(store, b["tenant"]) == b_before
