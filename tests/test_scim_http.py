"""SCIM over real HTTP: CRUD, read-your-writes, uniqueness, filters, pagination, sorting,
attribute selection, ETags, errors, tenant isolation, deletion and erasure."""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


class Scim:
    def __init__(self, srv, tenant: str, token: str, session: ClientSession):
        self.srv, self.tenant, self.token, self.session = srv, tenant, token, session

    def url(self, path: str) -> str:
        return str(self.srv.make_url(f"/scim/v2/{self.tenant}{path}"))

    async def req(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                  headers: dict | None = None, ctype: str | None = "application/scim+json",
                  token: str | None = None):
        h = {"Authorization": f"Bearer {token or self.token}"}
        if ctype and (body is not None or raw is not None):
            h["Content-Type"] = ctype
        h.update(headers or {})
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        async with self.session.request(method, self.url(path), data=data, headers=h) as r:
            text = await r.read()
            js = orjson.loads(text) if text else None
            return r.status, js, r.headers

    async def create_user(self, user_name: str, **attrs) -> dict:
        status, body, _ = await self.req("POST", "/Users", {"schemas": [USER_URN], "userName": user_name, **attrs})
        assert status == 201, body
        return body

    async def create_group(self, name: str, members: list[str] = (), **attrs) -> dict:
        status, body, _ = await self.req("POST", "/Groups", {
            "schemas": [GROUP_URN], "displayName": name,
            "members": [{"value": m} for m in members], **attrs})
        assert status == 201, body
        return body

    async def patch(self, path: str, *ops, headers=None, query: str = ""):
        return await self.req("PATCH", path + query, {"schemas": [PATCH_URN], "Operations": list(ops)},
                              headers=headers)

    async def list(self, path: str, **params):
        from urllib.parse import urlencode
        q = ("?" + urlencode(params)) if params else ""
        status, body, _ = await self.req("GET", path + q)
        assert status == 200, body
        return body


@pytest.fixture
async def scim(service, tenant_tokens):
    srv, _ = service
    async with ClientSession() as s:
        yield Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)


def is_error(body, status, scim_type=None):
    assert body["schemas"] == [ERROR_URN]
    assert body["status"] == str(status)
    if scim_type:
        assert body.get("scimType") == scim_type, body


async def test_user_crud_round_trip(scim):
    u = await scim.create_user("Ada@Example.com", name={"givenName": "Ada", "familyName": "Lovelace"},
                               emails=[{"value": "ada@example.com", "type": "work", "primary": True}],
                               password="s3cret", active=True)
    uid = u["id"]
    assert u["userName"] == "Ada@Example.com" and "password" not in u
    assert u["meta"]["resourceType"] == "User" and u["meta"]["version"] == 'W/"1"'
    assert u["meta"]["location"].endswith(f"/scim/v2/{scim.tenant}/Users/{uid}")
    assert u["meta"]["created"] == u["meta"]["lastModified"]
    status, got, h = await scim.req("GET", f"/Users/{uid}")
    assert status == 200 and got["name"]["familyName"] == "Lovelace" and h["ETag"] == 'W/"1"'
    assert h["Content-Type"].startswith("application/scim+json")
    status, put, _ = await scim.req("PUT", f"/Users/{uid}", {
        "schemas": [USER_URN, ENT_URN], "userName": "ada@example.com", "active": False,
        ENT_URN: {"department": "Maths"}})
    assert status == 200, put
    assert put["active"] is False and "name" not in put and put[ENT_URN]["department"] == "Maths"
    assert put["meta"]["version"] != 'W/"1"'
    status, p, _ = await scim.patch(f"/Users/{uid}", {"op": "replace", "path": "displayName", "value": "Ada L"})
    assert status == 200 and p["displayName"] == "Ada L"
    status, _, _ = await scim.req("DELETE", f"/Users/{uid}")
    assert status == 204
    status, body, _ = await scim.req("GET", f"/Users/{uid}")
    assert status == 404
    is_error(body, 404)
    status, body, _ = await scim.req("DELETE", f"/Users/{uid}")
    assert status == 404


async def test_events_carry_changes_and_metadata(scim, service):
    _, rt = service
    u = await scim.create_user("ev@x.com", displayName="Ev")
    await scim.patch(f"/Users/{u['id']}", {"op": "replace", "path": "active", "value": False})
    await scim.patch(f"/Users/{u['id']}", {"op": "replace", "path": "title", "value": "Boss"})
    evs = await rt.store.read_stream(scim.tenant, f"user-{u['id']}")
    assert [e.type for e in evs] == ["UserCreated", "UserDeactivated", "UserPatched"]
    assert evs[0].metadata["source"] == "scim" and evs[0].metadata["actor"].startswith("token:")
    assert evs[0].metadata["request_id"]
    assert evs[0].data["personal_attributes"]["userName"] == "ev@x.com"
    assert evs[2].data["personal_changed"] == {"title": "Boss"}
    async with rt.pool.acquire() as conn:
        raw = await conn.fetchval("SELECT data::text FROM events WHERE tenant_id = $1 AND stream = $2 "
                                  "AND stream_version = 1", scim.tenant, f"user-{u['id']}")
    assert "ev@x.com" not in raw and "password" not in raw


async def test_username_unique_case_insensitive(scim):
    await scim.create_user("Bob@X.com")
    status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": "bob@x.COM"})
    assert status == 409
    is_error(body, 409, "uniqueness")
    other = await scim.create_user("carol@x.com")
    status, body, _ = await scim.patch(f"/Users/{other['id']}",
                                       {"op": "replace", "path": "userName", "value": "BOB@x.com"})
    assert status == 409 and body["scimType"] == "uniqueness"
    status, body, _ = await scim.req("PUT", f"/Users/{other['id']}", {"schemas": [USER_URN], "userName": "bOb@x.com"})
    assert status == 409 and body["scimType"] == "uniqueness"


async def test_concurrent_duplicate_creates_exactly_one_wins(scim):
    results = await asyncio.gather(*[
        scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": "dup@x.com" if i % 2 else "DUP@x.com"})
        for i in range(20)])
    statuses = sorted(s for s, _, _ in results)
    assert statuses.count(201) == 1 and statuses.count(409) == 19


async def test_read_your_writes_in_lists(scim):
    u = await scim.create_user("ryw@x.com")
    body = await scim.list("/Users", filter='userName eq "RYW@x.com"')
    assert body["totalResults"] == 1 and body["Resources"][0]["id"] == u["id"]


async def test_filters(scim):
    a = await scim.create_user("alice@corp.com", externalId="ext-a", displayName="Alice",
                               emails=[{"value": "alice@work.com", "type": "work"},
                                       {"value": "alice@home.com", "type": "home"}])
    b = await scim.create_user("albert@corp.com", externalId="ext-b", active=False,
                               emails=[{"value": "al@work.com", "type": "work"}])
    await scim.create_user("zed@other.com")

    async def ids(f):
        body = await scim.list("/Users", filter=f)
        assert body["totalResults"] == len(body["Resources"])
        return {r["id"] for r in body["Resources"]}

    assert await ids('userName eq "ALICE@corp.com"') == {a["id"]}
    assert await ids('userName sw "al"') == {a["id"], b["id"]}
    assert await ids('userName co "CORP"') == {a["id"], b["id"]}
    assert await ids('userName eq "alice@corp.com" or userName eq "zed@other.com"') != set()
    assert len(await ids('userName eq "alice@corp.com" or userName eq "zed@other.com"')) == 2
    assert await ids('emails[type eq "work" and value co "@work.com"]') == {a["id"], b["id"]}
    assert await ids('emails[type eq "work"].value eq "alice@work.com"') == {a["id"]}
    assert await ids('emails.value eq "alice@home.com"') == {a["id"]}
    assert await ids("externalId eq ext-b") == {b["id"]}          # Entra: unquoted value
    assert await ids('active eq false') == {b["id"]}
    assert await ids('not (userName sw "al")') == await ids('userName eq "zed@other.com"')
    empty = await scim.list("/Users", filter='userName eq "nobody@x.com"')
    assert empty["totalResults"] == 0 and empty["Resources"] == [] and empty["itemsPerPage"] == 0
    status, body, _ = await scim.req("GET", "/Users?filter=userName%20zz%20%22x%22")
    assert status == 400
    is_error(body, 400, "invalidFilter")
    status, body, _ = await scim.req("GET", "/Users?filter=nosuch%20eq%20%22x%22")
    assert status == 400 and body["scimType"] == "invalidFilter"


async def test_pagination_is_stable_and_counts_are_right(scim):
    made = [await scim.create_user(f"page{i:02d}@x.com") for i in range(7)]
    seen = []
    for start in (1, 4, 7):
        body = await scim.list("/Users", startIndex=start, count=3)
        assert body["totalResults"] == 7 and body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"]) == (3 if start < 7 else 1)
        seen += [r["id"] for r in body["Resources"]]
    assert sorted(seen) == sorted(u["id"] for u in made) and len(set(seen)) == 7
    again = [r["id"] for r in (await scim.list("/Users", startIndex=1, count=7))["Resources"]]
    assert again == seen
    body = await scim.list("/Users", count=0)
    assert body["totalResults"] == 7 and body["Resources"] == []
    body = await scim.list("/Users", startIndex=50, count=5)
    assert body["totalResults"] == 7 and body["Resources"] == []


async def test_sorting(scim):
    for n in ("carl", "Anna", "bob"):
        await scim.create_user(f"{n}@x.com")
    asc = await scim.list("/Users", sortBy="userName")
    assert [r["userName"] for r in asc["Resources"]] == ["Anna@x.com", "bob@x.com", "carl@x.com"]
    desc = await scim.list("/Users", sortBy="userName", sortOrder="descending")
    assert [r["userName"] for r in desc["Resources"]] == ["carl@x.com", "bob@x.com", "Anna@x.com"]


async def test_attributes_and_excluded_attributes(scim):
    u = await scim.create_user("attr@x.com", displayName="At", name={"givenName": "A", "familyName": "T"},
                               emails=[{"value": "a@x.com", "type": "work"}])
    status, body, _ = await scim.req("GET", f"/Users/{u['id']}?attributes=userName,name.givenName")
    assert status == 200
    assert set(body) == {"schemas", "id", "userName", "name"} and body["name"] == {"givenName": "A"}
    status, body, _ = await scim.req("GET", f"/Users/{u['id']}?excludedAttributes=emails,name")
    assert "emails" not in body and "name" not in body and body["displayName"] == "At" and body["id"]
    lst = await scim.list("/Users", filter='userName eq "attr@x.com"', attributes="emails.value")
    assert lst["Resources"][0]["emails"] == [{"value": "a@x.com"}]


async def test_etags(scim):
    u = await scim.create_user("etag@x.com")
    uid = u["id"]
    status, _, h = await scim.req("GET", f"/Users/{uid}", headers={"If-None-Match": 'W/"1"'})
    assert status == 304 and h["ETag"] == 'W/"1"'
    status, body, _ = await scim.patch(f"/Users/{uid}", {"op": "replace", "path": "nickName", "value": "E"},
                                       headers={"If-Match": 'W/"7"'})
    assert status == 412
    is_error(body, 412)
    status, body, h = await scim.patch(f"/Users/{uid}", {"op": "replace", "path": "nickName", "value": "E"},
                                       headers={"If-Match": 'W/"1"'})
    assert status == 200 and h["ETag"] == 'W/"2"' and body["meta"]["version"] == 'W/"2"'
    status, _, _ = await scim.req("GET", f"/Users/{uid}", headers={"If-None-Match": 'W/"1"'})
    assert status == 200
    status, _, _ = await scim.req("PUT", f"/Users/{uid}", {"schemas": [USER_URN], "userName": "etag@x.com"},
                                  headers={"If-Match": 'W/"1"'})
    assert status == 412
    status, _, _ = await scim.req("DELETE", f"/Users/{uid}", headers={"If-Match": 'W/"1"'})
    assert status == 412
    status, _, _ = await scim.req("DELETE", f"/Users/{uid}", headers={"If-Match": 'W/"2"'})
    assert status == 204


async def test_groups_members_and_delete_removes_from_groups(scim, service):
    _, rt = service
    u1 = await scim.create_user("m1@x.com", displayName="M One")
    u2 = await scim.create_user("m2@x.com")
    g = await scim.create_group("Engineers", [u1["id"], u2["id"]])
    assert {m["value"] for m in g["members"]} == {u1["id"], u2["id"]}
    assert any(m.get("display") == "M One" for m in g["members"])
    status, got, _ = await scim.req("GET", f"/Users/{u1['id']}")
    assert got["groups"][0]["value"] == g["id"] and got["groups"][0]["display"] == "Engineers"
    status, body, _ = await scim.req("GET", f"/Groups/{g['id']}?excludedAttributes=members")
    assert status == 200 and "members" not in body and body["displayName"] == "Engineers"
    status, _, _ = await scim.req("DELETE", f"/Users/{u1['id']}")
    assert status == 204
    status, body, _ = await scim.req("GET", f"/Groups/{g['id']}")
    assert [m["value"] for m in body["members"]] == [u2["id"]]
    evs = await rt.store.read_stream(scim.tenant, f"group-{g['id']}")
    assert [e.type for e in evs] == ["GroupCreated", "MembersAdded", "MembersRemoved"]
    user_ev = (await rt.store.read_stream(scim.tenant, f"user-{u1['id']}"))[-1]
    assert user_ev.type == "UserDeleted" and user_ev.seq == evs[-1].seq - 1   # same append
    status, body, _ = await scim.req("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Bad",
                                                          "members": [{"value": "no-such-id"}]})
    assert status == 400 and body["scimType"] == "invalidValue"


async def test_group_patch_204_and_attributes(scim):
    u = await scim.create_user("gp@x.com")
    g = await scim.create_group("G")
    status, body, h = await scim.patch(f"/Groups/{g['id']}", {"op": "add", "path": "members", "value": [{"value": u["id"]}]})
    assert status == 204 and body is None and h["ETag"] == 'W/"2"'
    status, body, _ = await scim.patch(f"/Groups/{g['id']}", {"op": "replace", "path": "displayName", "value": "G2"},
                                       query="?attributes=displayName")
    assert status == 200 and body["displayName"] == "G2" and "members" not in body
    status, body, _ = await scim.req("PUT", f"/Groups/{g['id']}", {"schemas": [GROUP_URN], "displayName": "G3"})
    assert status == 200 and "members" not in body
    status, _, _ = await scim.req("DELETE", f"/Groups/{g['id']}")
    assert status == 204
    status, got, _ = await scim.req("GET", f"/Users/{u['id']}")
    assert "groups" not in got


async def test_search_endpoints(scim):
    u = await scim.create_user("srch@x.com")
    g = await scim.create_group("Searchers")
    status, body, _ = await scim.req("POST", "/Users/.search", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName eq "srch@x.com"', "attributes": ["userName"], "startIndex": 1, "count": 10})
    assert status == 200 and body["totalResults"] == 1 and set(body["Resources"][0]) == {"schemas", "id", "userName"}
    status, body, _ = await scim.req("POST", "/.search", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName eq "srch@x.com" or displayName eq "Searchers"'})
    assert status == 200 and {r["id"] for r in body["Resources"]} == {u["id"], g["id"]}
    status, body, _ = await scim.req("POST", "/Groups/.search", {"filter": 'displayName eq "searchers"'})
    assert status == 200 and body["totalResults"] == 1


async def test_discovery(scim):
    status, body, _ = await scim.req("GET", "/Schemas")
    ids = {s["id"] for s in body["Resources"]}
    assert {USER_URN, GROUP_URN, ENT_URN} <= ids and body["totalResults"] == len(ids)
    status, body, _ = await scim.req("GET", f"/Schemas/{USER_URN}")
    assert status == 200 and body["meta"]["resourceType"] == "Schema"
    status, body, _ = await scim.req("GET", "/Schemas/urn:nope")
    assert status == 404
    status, body, _ = await scim.req("GET", "/ResourceTypes")
    assert {r["name"] for r in body["Resources"]} == {"User", "Group"}
    status, body, _ = await scim.req("GET", "/ResourceTypes/User")
    assert status == 200 and body["endpoint"] == "/Users"
    status, body, _ = await scim.req("GET", "/ServiceProviderConfig")
    assert status == 200 and body["etag"]["supported"] is True


async def test_error_bodies(scim):
    status, body, _ = await scim.req("POST", "/Users", raw=b'{"userName": ')
    assert status == 400
    is_error(body, 400, "invalidSyntax")
    status, body, _ = await scim.req("POST", "/Users", raw=b'{"userName": "\xff\xfe"}')
    assert status == 400 and body["scimType"] == "invalidSyntax"
    status, body, _ = await scim.req("POST", "/Users", raw=b'{"userName": "a\\u0000b"}')
    assert status == 400 and body["scimType"] == "invalidValue"
    status, body, _ = await scim.req("POST", "/Users", {"userName": "ok@x.com"}, ctype="text/plain")
    assert status == 415
    is_error(body, 415)
    status, body, _ = await scim.req("POST", "/Users", {"userName": "ok2@x.com"}, ctype="application/json")
    assert status == 201
    status, body, _ = await scim.req("POST", "/Users", raw=b'{"userName": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert status == 413
    is_error(body, 413)
    status, body, _ = await scim.req("PUT", "/Users", {"userName": "x"})
    assert status == 405
    is_error(body, 405)
    status, body, _ = await scim.req("GET", "/Users/does-not-exist")
    assert status == 404
    is_error(body, 404)
    status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": "x@x.com", "bogus": 1})
    assert status == 400 and body["scimType"] == "invalidValue"
    status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN]})
    assert status == 400 and body["scimType"] == "invalidValue"
    status, body, _ = await scim.req("PATCH", "/Users/does-not-exist", {"Operations": [{"op": "add", "path": "x"}]})
    assert status in (400, 404)
    status, body, _ = await scim.req("GET", "/Users?startIndex=abc")
    assert status == 400 and body["scimType"] == "invalidValue"
    status, body, _ = await scim.req("GET", "/Users?sortBy=nosuch")
    assert status == 400


async def test_no_partial_write_on_failed_patch(scim):
    u = await scim.create_user("atomic@x.com", displayName="Before")
    status, body, _ = await scim.patch(f"/Users/{u['id']}",
                                       {"op": "replace", "path": "displayName", "value": "After"},
                                       {"op": "remove", "path": "userName"})
    assert status == 400
    status, got, _ = await scim.req("GET", f"/Users/{u['id']}")
    assert got["displayName"] == "Before" and got["meta"]["version"] == 'W/"1"'


async def test_tenant_isolation(service, tenant_tokens, scim):
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    srv, rt = service
    u = await scim.create_user("iso@x.com")
    other = tenant_tokens["tenant"] + "-b"
    await rt.bus.execute(other, CreateTenant(other, other))
    cmd = IssueToken("scim")
    await rt.bus.execute(other, cmd)
    # B's token on A's URL: 403 whatever the path
    status, body, _ = await scim.req("GET", f"/Users/{u['id']}", token=cmd.token)
    assert status == 403
    is_error(body, 403)
    # A's user id under B's URL with B's token: not found there
    b = Scim(srv, other, cmd.token, scim.session)
    status, body, _ = await b.req("GET", f"/Users/{u['id']}")
    assert status == 404
    assert (await b.list("/Users", filter='userName eq "iso@x.com"'))["totalResults"] == 0
    status, _, _ = await b.req("DELETE", f"/Users/{u['id']}")
    assert status == 404
    # and the same userName is free in B
    await b.create_user("iso@x.com")


async def test_erasure_clears_personal_fields(scim, service):
    from ledger.erasure import erase
    _, rt = service
    u = await scim.create_user("erase.me@x.com", displayName="Erase Me", active=True,
                               emails=[{"value": "erase.me@x.com"}],
                               **{ENT_URN: {"employeeNumber": "42", "department": "Ops"}})
    assert await erase(rt.store, scim.tenant, u["id"])
    status, got, _ = await scim.req("GET", f"/Users/{u['id']}")
    assert status == 200
    assert "userName" not in got and "emails" not in got and "displayName" not in got
    assert got[ENT_URN] == {"department": "Ops"} and got["active"] is True
    evs = await rt.store.read_stream(scim.tenant, f"user-{u['id']}")
    assert evs[0].erased and "personal_attributes" not in evs[0].data
    # deactivation still works on an erased user; personal writes are refused
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "replace", "path": "active", "value": False})
    assert status == 200 and body["active"] is False
    status, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "replace", "path": "displayName", "value": "Back"})
    assert status == 409
    # the name is free again
    await scim.create_user("erase.me@x.com")
