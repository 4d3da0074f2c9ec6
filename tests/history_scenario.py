"""One scripted tenant story over the real HTTP service, for the history tests (SCIM ?asOf and the CLI):
a user created, added to a licence-granting group, an attribute changed, deactivated, a backdated
licence correction, deleted; `marks[i]` is an instant between its events and `seq_at[i]` the head then."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson
import pytest
from aiohttp import ClientSession

URN = "urn:ietf:params:scim:schemas:core:2.0:"
PATCH = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}


class Scenario:
    """The tenant's story; marks[i] is an instant between its events, seq_at[i] the head then."""

    def __init__(self, srv, tokens, session):
        self.srv, self.tokens, self.s = srv, tokens, session
        self.t = tokens["tenant"]
        self.marks: list[datetime] = []
        self.seq_at: list[int] = []
        self.live: dict[int, dict] = {}      # mark index -> the live User read just before it

    async def call(self, method, path, scope="admin", body=None, **params):
        async with self.s.request(method, self.srv.make_url(path), json=body, params=params,
                                  headers={"Authorization": f"Bearer {self.tokens[scope]}"}) as r:
            raw = await r.read()
            return r.status, (orjson.loads(raw) if raw else None), r.headers

    async def mark(self, store):
        await asyncio.sleep(0.01)     # recorded times are distinct from the marks
        self.marks.append(datetime.now(timezone.utc))
        self.seq_at.append((await store.head(self.t))[0])
        await asyncio.sleep(0.01)

    def user_url(self, uid):
        return f"/scim/v2/{self.t}/Users/{uid}"


async def play(sc: Scenario, store) -> tuple[str, str]:
    t = sc.t
    st, g, _ = await sc.call("POST", f"/scim/v2/{t}/Groups", "scim", {"schemas": [URN + "Group"], "displayName": "Design"})
    assert st == 201, g
    assert (await sc.call("POST", f"/v1/{t}/products", body={"product_id": "pro", "name": "Pro"}))[0] < 300
    assert (await sc.call("POST", f"/v1/{t}/pools", body={
        "pool_id": "p1", "product_id": "pro", "seats": 5, "term_start": "2024-01-01T00:00:00Z",
        "term_end": "2099-01-01T00:00:00Z"}))[0] < 300
    assert (await sc.call("POST", f"/v1/{t}/pools/p1/rules", body={
        "rule_id": "design", "kind": "group", "group_id": g["id"]}))[0] < 300
    await sc.mark(store)                                                         # 0: no user yet
    st, u, _ = await sc.call("POST", f"/scim/v2/{t}/Users", "scim", {
        "schemas": [URN + "User"], "userName": "ada", "active": True, "title": "Engineer", "name": {"givenName": "Ada"}})
    assert st == 201, u
    uid = u["id"]
    sc.live[1] = (await sc.call("GET", sc.user_url(uid), "scim"))[1]
    await sc.mark(store)                                                         # 1: created, no group
    assert (await sc.call("PATCH", f"/scim/v2/{t}/Groups/{g['id']}", "scim", {**PATCH, "Operations": [
        {"op": "add", "path": "members", "value": [{"value": uid}]}]}))[0] == 204
    await sc.mark(store)                                                         # 2: member, holds p1
    assert (await sc.call("PATCH", sc.user_url(uid), "scim", {**PATCH, "Operations": [
        {"op": "replace", "path": "title", "value": "Lead"}]}))[0] == 200
    sc.live[3] = (await sc.call("GET", sc.user_url(uid), "scim"))[1]
    await sc.mark(store)                                                         # 3: title Lead
    assert (await sc.call("PATCH", sc.user_url(uid), "scim", {**PATCH, "Operations": [
        {"op": "replace", "path": "active", "value": False}]}))[0] == 200
    sc.live[4] = (await sc.call("GET", sc.user_url(uid), "scim"))[1]
    await sc.mark(store)                                                         # 4: deactivated
    # the backdated correction: the holding really ended at marks[3] (recorded now)
    st, body, _ = await sc.call("POST", f"/v1/{t}/pools/p1/corrections",
                                body={"user_id": uid, "ended_at": sc.marks[3].isoformat(), "reason": "left early"})
    assert st < 300, body
    await sc.mark(store)                                                         # 5: corrected
    assert (await sc.call("DELETE", sc.user_url(uid), "scim"))[0] == 204
    await sc.mark(store)                                                         # 6: deleted
    return uid, g["id"]


@pytest.fixture
async def scenario(service, tenant_tokens, store):
    """(Scenario, user id, group id) once the story is played."""
    srv, _ = service
    async with ClientSession() as s:
        sc = Scenario(srv, tenant_tokens, s)
        uid, gid = await play(sc, store)
        yield sc, uid, gid
