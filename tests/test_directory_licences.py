"""The seat inputs a directory batch reads in one round trip (ledger/directory_licences.py): pools,
rules, the direct groups of users the directory did not load, admin grants - each must reach the
decision, through the real HTTP service."""
from __future__ import annotations

from test_licences_follow_scim import admin, pool, scim, seat_of  # noqa: F401 - scim is a fixture

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def test_admin_grant_and_group_grant_survive_unrelated_user_changes(service, tenant_tokens, scim):
    srv, _ = service
    g = await scim.create_group("designers")
    await pool(srv, tenant_tokens, 5, [{"rule_id": "g", "priority": 10, "kind": "group", "group_id": g["id"]}])
    by_admin = await scim.create_user("dora")
    by_group = await scim.create_user("emil")
    await admin(srv, tenant_tokens, "POST", "/pools/p1/assignments", {"user_id": by_admin["id"]})
    await scim.patch(f"/Groups/{g['id']}", {"op": "add", "path": "members", "value": [{"value": by_group["id"]}]})
    assert await seat_of(srv, tenant_tokens, by_admin["id"]) == "active"
    assert await seat_of(srv, tenant_tokens, by_group["id"]) == "active"
    # a user-only write: the batch reads the admin grant and the group membership, so both seats stay
    for u in (by_admin, by_group):
        st, _, _ = await scim.patch(f"/Users/{u['id']}", {"op": "replace", "value": {ENT: {"department": "Ops"}}})
        assert st in (200, 204)
    assert await seat_of(srv, tenant_tokens, by_admin["id"]) == "active"
    assert await seat_of(srv, tenant_tokens, by_group["id"]) == "active"


async def test_put_members_of_a_rule_group_moves_seats_of_users_not_in_the_request(service, tenant_tokens, scim):
    srv, _ = service
    a = await scim.create_user("fay")
    b = await scim.create_user("gus")
    g = await scim.create_group("contractors")
    await pool(srv, tenant_tokens, 5, [{"rule_id": "g", "priority": 10, "kind": "group", "group_id": g["id"]}])
    await scim.patch(f"/Groups/{g['id']}", {"op": "add", "path": "members", "value": [{"value": a["id"]}]})
    assert await seat_of(srv, tenant_tokens, a["id"]) == "active"
    # full replacement: a leaves (loaded only because the rule names the group), b joins
    st, body, _ = await scim.req("PUT", f"/Groups/{g['id']}", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "contractors",
        "members": [{"value": b["id"]}]})
    assert st == 200, body
    assert await seat_of(srv, tenant_tokens, a["id"]) is None
    assert await seat_of(srv, tenant_tokens, b["id"]) == "active"


async def test_tenant_without_pools_keeps_its_directory_writes(service, tenant_tokens, scim):
    u = await scim.create_user("hal")
    g = await scim.create_group("nobody-licenses-this")
    st, _, _ = await scim.patch(f"/Groups/{g['id']}", {"op": "add", "path": "members", "value": [{"value": u["id"]}]})
    assert st in (200, 204)
    st, body, _ = await scim.req("GET", f"/Groups/{g['id']}")
    assert st == 200 and [m["value"] for m in body["members"]] == [u["id"]]
