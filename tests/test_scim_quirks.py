"""Every behaviour of ../shared/scim-idp-quirks.md, each with the exact payload Entra ID or Okta sends."""
from __future__ import annotations

import pytest
from aiohttp import ClientSession

from test_scim_http import ENT_URN, GROUP_URN, PATCH_URN, USER_URN, Scim

ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


@pytest.fixture
async def scim(service, tenant_tokens):
    srv, _ = service
    async with ClientSession() as s:
        yield Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)


async def entra_user(scim, n="1") -> dict:
    status, body, _ = await scim.req("POST", "/Users", {
        "schemas": [USER_URN, ENT_URN],
        "externalId": f"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4e{n}",
        "userName": f"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd{n}@testuser.com",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"Test_User_fd0ea19b-{n}@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []})
    assert status == 201, body
    return body


async def entra_group(scim, name="displayName") -> dict:
    status, body, _ = await scim.req("POST", "/Groups", {
        "schemas": [GROUP_URN, ADSCIM_GROUP],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": name,
        "meta": {"resourceType": "Group"}})
    assert status == 201, body
    return body


async def get(scim, path):
    status, body, _ = await scim.req("GET", path)
    assert status == 200, body
    return body


async def members(scim, gid) -> set[str]:
    return {m["value"] for m in (await get(scim, f"/Groups/{gid}")).get("members", [])}


# ---- Entra ID ---------------------------------------------------------------------------------

async def test_entra_capitalised_ops(scim):
    u = await entra_user(scim)
    status, body, _ = await scim.req("PATCH", f"/Users/{u['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Ada"},
        {"op": "Add", "path": "nickName", "value": "ada"},
        {"op": "Remove", "path": "title"}]})
    assert status == 200 and body["displayName"] == "Ada" and body["nickName"] == "ada"


@pytest.mark.parametrize("value, expected", [("False", False), ("false", False), ("True", True)])
async def test_entra_booleans_as_strings(scim, value, expected):
    u = await entra_user(scim)
    if expected:
        await scim.patch(f"/Users/{u['id']}", {"op": "Replace", "path": "active", "value": False})
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "Replace", "path": "active", "value": value})
    assert status == 200 and body["active"] is expected


async def test_entra_patch_without_path_dotted_and_urn_keys(scim):
    u = await entra_user(scim)
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "replace", "value": {
        "name.givenName": "Ada",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
        "active": False}})
    assert status == 200, body
    assert body["name"]["givenName"] == "Ada" and body["name"]["familyName"] == "familyName"
    assert body[ENT_URN]["employeeNumber"] == "42" and body["active"] is False


async def test_entra_member_removal_value_array_and_filter_forms(scim):
    a, b = await entra_user(scim, "1"), await entra_user(scim, "2")
    g = await entra_group(scim)
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": a["id"]}, {"$ref": None, "value": b["id"]}]}]})
    assert status == 204
    assert await members(scim, g["id"]) == {a["id"], b["id"]}
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": a["id"]}]}]})
    assert status == 204
    assert await members(scim, g["id"]) == {b["id"]}
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "remove", "path": f'members[value eq "{b["id"]}"]'}]})
    assert status == 204
    assert await members(scim, g["id"]) == set()
    # a retried removal of a non-member is a no-op, not an error
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "remove", "path": f'members[value eq "{b["id"]}"]'}]})
    assert status == 204


async def test_entra_group_create_with_unknown_schema_and_meta(scim):
    g = await entra_group(scim, "Entra Group")
    assert g["displayName"] == "Entra Group" and g["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    assert ADSCIM_GROUP not in g["schemas"] and g["meta"]["resourceType"] == "Group"


async def test_entra_add_on_single_valued_replaces(scim):
    u = await entra_user(scim)
    await scim.patch(f"/Users/{u['id']}", {"op": "Add", "path": "displayName", "value": "First"})
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "Add", "path": "displayName", "value": "Second"})
    assert status == 200 and body["displayName"] == "Second"


async def test_entra_unmatched_value_path_creates_entry(scim):
    u = await entra_user(scim)
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {
        "op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"})
    assert status == 200, body
    assert body["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]


async def test_entra_manager_as_bare_string(scim):
    boss, u = await entra_user(scim, "1"), await entra_user(scim, "2")
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {
        "op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "value": boss["id"]})
    assert status == 200, body
    assert body[ENT_URN]["manager"]["value"] == boss["id"]


async def test_entra_queries_before_writes(scim):
    u = await entra_user(scim)
    g = await entra_group(scim, "Query Group")
    name = u["userName"]
    lst = await scim.list("/Users", filter=f'userName eq "{name}"')
    assert lst["totalResults"] == 1 and lst["Resources"][0]["id"] == u["id"]
    lst = await scim.list("/Users", filter=f"externalId eq {u['externalId']}")   # unquoted, as documented
    assert lst["totalResults"] == 1
    lst = await scim.list("/Users", filter=f'externalId eq "{u["externalId"]}"')
    assert lst["totalResults"] == 1
    lst = await scim.list("/Groups", filter='displayName eq "Query Group"', excludedAttributes="members")
    assert lst["totalResults"] == 1 and lst["Resources"][0]["id"] == g["id"] and "members" not in lst["Resources"][0]
    email = u["emails"][0]["value"]
    lst = await scim.list("/Users", filter=f'emails[type eq "work"].value eq "{email}"')
    assert lst["totalResults"] == 1
    lst = await scim.list("/Users", filter=f'userName eq "{name}" and active eq true')
    assert lst["totalResults"] == 1


async def test_entra_deprovision_with_active_false_still_readable(scim):
    u = await entra_user(scim)
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "Replace", "path": "active", "value": "False"})
    assert status == 200 and body["active"] is False
    got = await get(scim, f"/Users/{u['id']}")
    assert got["active"] is False
    lst = await scim.list("/Users", filter=f'userName eq "{u["userName"]}"')
    assert lst["totalResults"] == 1 and lst["Resources"][0]["active"] is False


async def test_entra_group_patch_answers_204(scim):
    u = await entra_user(scim)
    g = await entra_group(scim)
    status, body, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": u["id"]}]}]})
    assert status == 204 and body is None


async def test_entra_stray_fields_ignored(scim):
    u = await entra_user(scim)
    status, body, _ = await scim.req("PATCH", f"/Users/{u['id']}", {
        "schemas": [PATCH_URN], "id": u["id"],
        "Operations": [{"op": "Replace", "name": "displayName", "path": "displayName", "value": "Stray"}]})
    assert status == 200 and body["displayName"] == "Stray"


async def test_entra_test_connection_random_filters_are_empty_lists(scim):
    for path, f in (("/Users", 'userName eq "7a2a4b6d-6a8b-4c1e-9f26-0b2f8a1c9d3e"'),
                    ("/Groups", 'displayName eq "2f5a8c1e-4b7d-4e8a-b3c6-9d1e0f2a7b45"'),
                    ("/Users", "externalId eq 3c9d1e0f-2a7b-45a8-b3c6-8c1e4b7d4e8a")):
        status, body, _ = await scim.req("GET", f"{path}?filter={f}")
        assert status == 200 and body["totalResults"] == 0 and body["Resources"] == []


# ---- Okta -------------------------------------------------------------------------------------

OKTA_USER = {
    "schemas": [USER_URN],
    "userName": "isabell.provisioning@okta.local",
    "name": {"givenName": "Isabell", "familyName": "Provisioning"},
    "emails": [{"primary": True, "value": "isabell.provisioning@okta.local", "type": "work"}],
    "displayName": "Isabell Provisioning",
    "locale": "en-US",
    "externalId": "00u1dhhb1fkIGP7RL1d8",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}


async def test_okta_existence_check_then_create_then_409(scim, service):
    lst = await scim.list("/Users", filter='userName eq "isabell.provisioning@okta.local"', startIndex=1, count=100)
    assert lst["totalResults"] == 0 and isinstance(lst["startIndex"], int) and isinstance(lst["itemsPerPage"], int)
    status, body, _ = await scim.req("POST", "/Users", OKTA_USER)
    assert status == 201 and "password" not in body and "groups" not in body
    _, rt = service
    async with rt.pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND data::text LIKE '%1mz050nq%'",
                                scim.tenant)
    assert n == 0
    status, body, _ = await scim.req("POST", "/Users", dict(OKTA_USER, userName="Isabell.Provisioning@OKTA.local"))
    assert status == 409 and body["scimType"] == "uniqueness" and body["status"] == "409"
    lst = await scim.list("/Users", filter='userName eq "isabell.provisioning@okta.local"', startIndex=1, count=100)
    assert lst["totalResults"] == 1


async def test_okta_pagination_integers_and_stable_order(scim):
    for i in range(5):
        await scim.req("POST", "/Users", dict(OKTA_USER, userName=f"okta{i}@okta.local", externalId=f"00u{i}"))
    first = await scim.list("/Users", startIndex=1, count=2)
    second = await scim.list("/Users", startIndex=3, count=2)
    third = await scim.list("/Users", startIndex=5, count=2)
    for page in (first, second, third):
        assert page["totalResults"] == 5 and type(page["itemsPerPage"]) is int
    ids = [r["id"] for p in (first, second, third) for r in p["Resources"]]
    assert len(ids) == len(set(ids)) == 5


async def test_okta_put_for_every_update_including_deactivation(scim):
    status, u, _ = await scim.req("POST", "/Users", OKTA_USER)
    assert status == 201
    put = dict(OKTA_USER, id=u["id"], name={"givenName": "Isabell", "familyName": "Renamed"}, active=False)
    put.pop("password")
    status, body, _ = await scim.req("PUT", f"/Users/{u['id']}", put)
    assert status == 200, body
    assert body["active"] is False and body["name"]["familyName"] == "Renamed"
    assert (await get(scim, f"/Users/{u['id']}"))["active"] is False


async def test_okta_deactivation_patch_without_path(scim):
    status, u, _ = await scim.req("POST", "/Users", OKTA_USER)
    status, body, _ = await scim.req("PATCH", f"/Users/{u['id']}", {
        "schemas": [PATCH_URN], "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert status == 200 and body["active"] is False


async def test_okta_group_membership_and_rename(scim):
    a = await scim.create_user("oa@okta.local")
    b = await scim.create_user("ob@okta.local")
    c = await scim.create_user("oc@okta.local")
    g = await scim.create_group("Okta Group", [a["id"], b["id"]])
    # remove one and add another in one PATCH
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "remove", "path": f'members[value eq "{a["id"]}"]'},
        {"op": "add", "path": "members", "value": [{"value": c["id"], "display": "oc@okta.local"}]}]})
    assert status == 204
    assert await members(scim, g["id"]) == {b["id"], c["id"]}
    # full replace of members
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "replace", "path": "members", "value": [{"value": a["id"]}]}]})
    assert status == 204
    assert await members(scim, g["id"]) == {a["id"]}
    # rename as a no-path value object including id, re-sent with membership updates
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "replace", "value": {"id": g["id"], "displayName": "Okta Renamed"}},
        {"op": "add", "path": "members", "value": [{"value": b["id"]}]}]})
    assert status == 204
    got = await get(scim, f"/Groups/{g['id']}")
    assert got["displayName"] == "Okta Renamed" and {m["value"] for m in got["members"]} == {a["id"], b["id"]}


async def test_okta_batched_membership_in_large_group(scim, service):
    from ledger.directory import CreateUser
    _, rt = service
    import uuid
    ids = [str(uuid.uuid4()) for _ in range(2000)]
    import asyncio
    await asyncio.gather(*[rt.bus.execute(scim.tenant, CreateUser(i, {"schemas": [USER_URN], "userName": f"bulk{n}@okta.local"}))
                           for n, i in enumerate(ids)])
    g = await scim.create_group("Big")
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": i} for i in ids]}]})
    assert status == 204
    status, _, _ = await scim.req("PATCH", f"/Groups/{g['id']}", {"schemas": [PATCH_URN], "Operations": [
        {"op": "remove", "path": f'members[value eq "{ids[0]}"]'},
        {"op": "add", "path": "members", "value": [{"value": ids[0]}]},
        {"op": "remove", "path": "members", "value": [{"value": ids[1]}]}]})
    assert status == 204
    assert len(await members(scim, g["id"])) == 1999


# ---- both ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", ["application/scim+json", "application/json",
                                   "application/scim+json; charset=utf-8"])
async def test_both_content_types(scim, ctype):
    status, body, h = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": f"ct-{len(ctype)}@x.com"},
                                     ctype=ctype)
    assert status == 201 and h["Content-Type"].startswith("application/scim+json")


async def test_both_error_body_shape(scim):
    status, body, _ = await scim.req("GET", "/Users?filter=userName%20eq")
    assert status == 400
    assert body == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400",
                    "scimType": "invalidFilter", "detail": body["detail"]}
