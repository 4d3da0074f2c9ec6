"""SCIM /Bulk over real HTTP (RFC 7644 §3.7): bulkId references in any order, failOnErrors,
limits (413), per-operation atomicity, circular references, and a 10,000-user onboarding."""
from __future__ import annotations

import orjson
import pytest

from test_scim_http import ENT_URN, GROUP_URN, PATCH_URN, USER_URN, is_error, scim  # noqa: F401 - fixture

BULK_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


def user_op(bulk_id: str, user_name: str, **attrs) -> dict:
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id,
            "data": {"schemas": [USER_URN] + ([ENT_URN] if ENT_URN in attrs else []), "userName": user_name, **attrs}}


async def bulk(scim, ops, **extra):
    status, body, headers = await scim.req("POST", "/Bulk", {"schemas": [BULK_URN], "Operations": ops, **extra})
    return status, body


async def test_discovery_advertises_bulk(scim):
    status, body, _ = await scim.req("GET", "/ServiceProviderConfig")
    assert status == 200
    assert body["bulk"]["supported"] is True
    assert body["bulk"]["maxOperations"] >= 10_000
    assert body["bulk"]["maxPayloadSize"] >= 4 * 1024 * 1024


async def test_group_referencing_users_created_later_in_the_request(scim):
    # the group comes first and references users defined after it (reverse order)
    ops = [{"method": "POST", "path": "/Groups", "bulkId": "g1",
            "data": {"schemas": [GROUP_URN], "displayName": "Engineering",
                     "members": [{"value": "bulkId:u2"}, {"value": "bulkId:u1"}]}},
           user_op("u2", "bob@example.com"),
           user_op("u1", "alice@example.com", **{ENT_URN: {"manager": {"value": "bulkId:u2"}}})]
    status, body = await bulk(scim, ops)
    assert status == 200, body
    assert body["schemas"] == [BULK_RESPONSE_URN]
    res = body["Operations"]
    assert [r["bulkId"] for r in res] == ["g1", "u2", "u1"]          # request order
    assert all(r["status"] == "201" and r["method"] == "POST" for r in res), res
    ids = {r["bulkId"]: r["location"].rsplit("/", 1)[1] for r in res}
    assert res[0]["location"].endswith(f"/Groups/{ids['g1']}")
    assert res[1]["version"] == 'W/"1"'
    # the group holds both users, read back over HTTP with their real ids
    st, g, _ = await scim.req("GET", f"/Groups/{ids['g1']}")
    assert st == 200
    assert sorted(m["value"] for m in g["members"]) == sorted([ids["u1"], ids["u2"]])
    assert g["meta"]["version"] == res[0]["version"]
    st, u1, _ = await scim.req("GET", f"/Users/{ids['u1']}")
    assert u1[ENT_URN]["manager"]["value"] == ids["u2"]
    # PUT/PATCH/DELETE by bulkId path in a second request are plain ids now
    ops2 = [{"method": "PATCH", "path": f"/Users/{ids['u2']}", "version": 'W/"1"',
             "data": {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": "active", "value": False}]}},
            {"method": "DELETE", "path": f"/Groups/{ids['g1']}"}]
    status, body = await bulk(scim, ops2)
    assert [r["status"] for r in body["Operations"]] == ["200", "204"], body
    assert body["Operations"][0]["version"] == 'W/"2"'


async def test_bulk_id_in_path_of_a_later_operation(scim):
    ops = [{"method": "PATCH", "path": "/Users/bulkId:p1",
            "data": {"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "title", "value": "CTO"}]}},
           user_op("p1", "carol@example.com")]
    status, body = await bulk(scim, ops)
    assert [r["status"] for r in body["Operations"]] == ["200", "201"], body
    uid = body["Operations"][1]["location"].rsplit("/", 1)[1]
    assert body["Operations"][0]["location"].endswith(uid)
    st, u, _ = await scim.req("GET", f"/Users/{uid}")
    assert u["title"] == "CTO"


async def test_a_failing_operation_leaves_the_others_committed(scim, tenant_tokens):
    await scim.create_user("taken@example.com")
    ops = [user_op("a", "ok1@example.com"),
           user_op("b", "TAKEN@example.com"),                       # 409 uniqueness
           user_op("c", "ok2@example.com", active="maybe"),          # 400 invalidValue
           {"method": "DELETE", "path": "/Users/00000000-0000-0000-0000-000000000000"},   # 404
           {"method": "POST", "path": "/Groups", "bulkId": "g",
            "data": {"schemas": [GROUP_URN], "displayName": "G", "members": [{"value": "bulkId:b"}]}},
           {"method": "GET", "path": "/Users"},                      # not a bulk method
           user_op("d", "ok3@example.com")]
    status, body = await bulk(scim, ops)
    assert status == 200
    res = body["Operations"]
    assert [r["status"] for r in res] == ["201", "409", "400", "404", "409", "400", "201"], res
    is_error(res[1]["response"], 409, "uniqueness")
    is_error(res[2]["response"], 400, "invalidValue")
    is_error(res[3]["response"], 404)
    assert "bulkId 'b'" in res[4]["response"]["detail"]
    for name in ("ok1@example.com", "ok3@example.com"):
        lst = await scim.list("/Users", filter=f'userName eq "{name}"')
        assert lst["totalResults"] == 1
    for name in ("ok2@example.com",):
        assert (await scim.list("/Users", filter=f'userName eq "{name}"'))["totalResults"] == 0
    assert (await scim.list("/Groups", filter='displayName eq "G"'))["totalResults"] == 0
    # the rejected operations are in the tenant's failed-request log, without the userName
    url = str(scim.srv.make_url(f"/v1/{scim.tenant}/scim/failures"))
    async with scim.session.get(url, headers={"Authorization": f"Bearer {tenant_tokens['admin']}"}) as r:
        rows = orjson.loads(await r.read())["failures"]
    assert sorted((x["status"], x["method"]) for x in rows) == \
        [(400, "GET"), (400, "POST"), (404, "DELETE"), (409, "POST"), (409, "POST")]
    assert all(x["detail"].startswith("bulk operation ") for x in rows)
    assert "taken@" not in orjson.dumps(rows).decode().lower()


async def test_fail_on_errors_stops_processing(scim):
    await scim.create_user("dup1@example.com")
    ops = [user_op("a", "foe-a@example.com"),
           user_op("b", "dup1@example.com"),        # error 1
           user_op("c", "foe-c@example.com"),
           user_op("d", "DUP1@example.com"),        # error 2: stop here
           user_op("e", "foe-e@example.com")]
    status, body = await bulk(scim, ops, failOnErrors=2)
    assert status == 200
    assert [(r["bulkId"], r["status"]) for r in body["Operations"]] == \
        [("a", "201"), ("b", "409"), ("c", "201"), ("d", "409")]
    assert (await scim.list("/Users", filter='userName eq "foe-e@example.com"'))["totalResults"] == 0
    assert (await scim.list("/Users", filter='userName eq "foe-c@example.com"'))["totalResults"] == 1
    # failOnErrors 1: the first error ends the job
    status, body = await bulk(scim, [user_op("x", "dup1@example.com"), user_op("y", "foe-y@example.com")],
                              failOnErrors=1)
    assert [r["status"] for r in body["Operations"]] == ["409"]
    status, body = await bulk(scim, [user_op("x", "foe-z@example.com")], failOnErrors=0)
    assert status == 400
    is_error(body, 400, "invalidValue")


async def test_too_many_operations_and_oversize_payload(scim, monkeypatch):
    from api import scim_bulk
    monkeypatch.setattr(scim_bulk, "BULK_MAX_OPERATIONS", 3)
    status, body = await bulk(scim, [user_op(f"u{i}", f"many{i}@example.com") for i in range(4)])
    assert status == 413
    is_error(body, 413, "tooMany")
    assert "maxOperations" in body["detail"]
    assert (await scim.list("/Users", filter='userName sw "many"'))["totalResults"] == 0
    monkeypatch.setattr(scim_bulk, "BULK_MAX_PAYLOAD", 2000)
    big = [user_op("big", "big@example.com", title="x" * 3000)]
    status, body = await bulk(scim, big)
    assert status == 413
    is_error(body, 413)
    assert "maxPayloadSize" in body["detail"]
    # without Content-Length (chunked), the limit holds too
    h = {"Authorization": f"Bearer {scim.token}", "Content-Type": "application/scim+json"}

    async def gen():
        yield orjson.dumps({"schemas": [BULK_URN], "Operations": big})
    async with scim.session.post(scim.url("/Bulk"), data=gen(), headers=h) as r:
        assert r.status == 413
    assert (await scim.list("/Users", filter='userName eq "big@example.com"'))["totalResults"] == 0


async def test_circular_and_unknown_references(scim):
    ops = [{"method": "POST", "path": "/Groups", "bulkId": "ga",
            "data": {"schemas": [GROUP_URN], "displayName": "A", "members": [{"value": "bulkId:gb"}]}},
           {"method": "POST", "path": "/Groups", "bulkId": "gb",
            "data": {"schemas": [GROUP_URN], "displayName": "B", "members": [{"value": "bulkId:ga"}]}},
           {"method": "POST", "path": "/Groups", "bulkId": "gc",     # behind the cycle
            "data": {"schemas": [GROUP_URN], "displayName": "C", "members": [{"value": "bulkId:ga"}]}},
           {"method": "POST", "path": "/Groups", "bulkId": "gd",
            "data": {"schemas": [GROUP_URN], "displayName": "D", "members": [{"value": "bulkId:nope"}]}},
           user_op("ok", "cycle-ok@example.com")]
    status, body = await bulk(scim, ops)
    assert status == 200
    by = {r["bulkId"]: r for r in body["Operations"]}
    for b in ("ga", "gb", "gc"):
        assert by[b]["status"] == "409", by[b]
        is_error(by[b]["response"], 409)
    assert "circular" in by["ga"]["response"]["detail"]
    assert by["gd"]["status"] == "400"
    is_error(by["gd"]["response"], 400, "invalidValue")
    assert by["ok"]["status"] == "201"
    assert (await scim.list("/Groups"))["totalResults"] == 0


async def test_malformed_bulk_requests(scim):
    status, body, _ = await scim.req("POST", "/Bulk", {"schemas": ["urn:x"], "Operations": []})
    assert status == 400
    is_error(body, 400, "invalidSyntax")
    status, body, _ = await scim.req("POST", "/Bulk", [1, 2])
    assert status == 400
    status, body, _ = await scim.req("POST", "/Bulk", raw=b"{nope")
    assert status == 400
    is_error(body, 400, "invalidSyntax")
    status, body = await bulk(scim, [])
    assert status == 200 and body["Operations"] == []
    status, body = await bulk(scim, [{"method": "POST", "path": "/Users", "data": {"userName": "nobulkid"}},
                                     {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "x1"}},
                                     {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "x2"}}])
    assert [r["status"] for r in body["Operations"]] == ["400", "201", "400"], body


async def test_onboarding_10000_users(scim):
    # behaviour only: how fast is scripts/bench_scim.py's business (a timed test would be flaky)
    n = 10_000
    ops = [user_op(f"u{i}", f"onboard{i:05d}@example.com", name={"givenName": f"G{i}", "familyName": "F"},
                   emails=[{"value": f"onboard{i:05d}@example.com", "type": "work", "primary": True}],
                   active=True)
           for i in range(n)]
    status, body = await bulk(scim, ops)
    assert status == 200
    assert len(body["Operations"]) == n
    assert all(r["status"] == "201" for r in body["Operations"])
    assert (await scim.list("/Users", count=0))["totalResults"] == n
