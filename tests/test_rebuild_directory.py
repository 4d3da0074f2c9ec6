"""The directory rebuilt from the events: a long SCIM history (creates, Entra and Okta PATCH forms,
PUT, membership changes, deletes, an erasure) folds into exactly the live `scim_resources` and
`group_members`; a corrupted row of each is named by --check and repaired by rebuild."""
from __future__ import annotations

import uuid

from ledger.directory import (GROUP_RS, USER_RS, CreateGroup, CreateUser, DeleteGroup, DeleteUser, PatchGroup,
                              PatchUser, ReplaceGroup, ReplaceUser)
from ledger.erasure import erase
from ledger.scim.resource import normalize
from projections import temporal as tp
from projections.rebuild import rebuild_tenant
from test_rebuild import writes_before_the_lock

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _id() -> str:
    return str(uuid.uuid4())


def _user(user_name: str, **kw) -> dict:
    return normalize({"schemas": [USER], "userName": user_name, **kw}, USER_RS)


async def scim_history(bus, store, tenant) -> dict[str, str]:
    ids = {k: _id() for k in ("ann", "bob", "cat", "dan", "eve", "eng", "ops", "all")}
    await bus.execute(tenant, CreateUser(ids["ann"], _user(
        "ann@x.com", name={"givenName": "Ann", "familyName": "Lee"}, emails=[{"value": "Ann@X.com", "primary": True}],
        active=True, title="Dev", **{ENT: {"employeeNumber": "7", "department": "R&D"}})))
    await bus.execute(tenant, CreateUser(ids["bob"], _user("bob@x.com", displayName="Bob", externalId="b-1")))
    await bus.execute(tenant, CreateUser(ids["cat"], _user("cat@x.com", **{ENT: {"employeeNumber": "9"}})))
    await bus.execute(tenant, CreateUser(ids["dan"], _user("dan@x.com", active=True)))
    await bus.execute(tenant, CreateUser(ids["eve"], _user("eve@x.com", nickName="E")))
    # Entra: capitalised ops, a no-path value object, "False" as a string
    await bus.execute(tenant, PatchUser(ids["ann"], [
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "value": {"title": "Lead", f"{ENT}:department": "Ops"}}]))
    # Okta: no-path replace with nested objects, then reactivation
    await bus.execute(tenant, PatchUser(ids["ann"], [{"op": "replace", "value": {"active": True,
                                                                             "name": {"givenName": "Anne"}}}]))
    await bus.execute(tenant, PatchUser(ids["bob"], [
        {"op": "add", "path": 'emails[type eq "work"].value', "value": "bob@work.com"},
        {"op": "remove", "path": "externalId"}]))
    await bus.execute(tenant, PatchUser(ids["cat"], [{"op": "remove", "path": f"{ENT}:employeeNumber"}]))
    # PUT: unsets `active` (a reactivation with `active` left unset), adds the enterprise extension
    await bus.execute(tenant, PatchUser(ids["dan"], [{"op": "replace", "path": "active", "value": False}]))
    await bus.execute(tenant, ReplaceUser(ids["dan"], {"schemas": [USER, ENT], "userName": "Dan@x.com",
                                                      ENT: {"costCenter": "42"}}))
    await bus.execute(tenant, ReplaceUser(ids["bob"], {"schemas": [USER], "userName": "bob@x.com",
                                                      "displayName": "Robert", "active": False}))
    await bus.execute(tenant, CreateGroup(ids["eng"], normalize({"schemas": [GROUP], "displayName": "Eng",
                                                                 "members": [{"value": ids["ann"]},
                                                                             {"value": ids["bob"]}]}, GROUP_RS)))
    await bus.execute(tenant, CreateGroup(ids["ops"], normalize({"schemas": [GROUP], "displayName": "Ops",
                                                                 "externalId": "ops-1"}, GROUP_RS)))
    await bus.execute(tenant, CreateGroup(ids["all"], normalize({"schemas": [GROUP], "displayName": "All"},
                                                                GROUP_RS)))
    await bus.execute(tenant, PatchGroup(ids["ops"], [
        {"op": "Add", "path": "members", "value": [{"value": ids["cat"]}, {"value": ids["dan"]}]},
        {"op": "Replace", "path": "displayName", "value": "Operations"}]))
    await bus.execute(tenant, PatchGroup(ids["all"], [{"op": "add", "path": "members", "value": [
        {"value": ids["eng"]}, {"value": ids["ops"]}, {"value": ids["eve"]}]}]))
    await bus.execute(tenant, PatchGroup(ids["ops"], [{"op": "remove", "path": f'members[value eq "{ids["dan"]}"]'}]))
    await bus.execute(tenant, ReplaceGroup(ids["eng"], {"schemas": [GROUP], "displayName": "Engineering",
                                                       "members": [{"value": ids["bob"]}, {"value": ids["cat"]}]}))
    await bus.execute(tenant, PatchGroup(ids["ops"], [{"op": "remove", "path": "externalId"}]))
    await bus.execute(tenant, DeleteUser(ids["eve"]))        # leaves the groups it was in
    await bus.execute(tenant, DeleteGroup(ids["ops"]))       # a member of `all`, with members of its own
    assert await erase(store, tenant, ids["ann"])
    await bus.execute(tenant, PatchUser(ids["ann"], [{"op": "replace", "path": "active", "value": False}]))
    assert await erase(store, tenant, ids["cat"])
    await tp.ensure_current(bus.pool, tenant)        # the temporal projection too, so only the directory is at stake
    return ids


async def test_directory_rebuild_after_a_long_scim_history_finds_nothing(bus, store, app_pool, tenant):
    await scim_history(bus, store, tenant)
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    tables = {t.table: t for t in rep.tables}
    assert tables["scim_resources"].live_rows == 6 and tables["group_members"].live_rows == 3
    assert rep.ok, [(t.table, t.differences) for t in rep.tables if not t.ok]


async def test_directory_rebuild_names_and_repairs_corrupted_rows(bus, store, app_pool, pg_pool, tenant):
    ids = await scim_history(bus, store, tenant)
    async with pg_pool.acquire() as conn:
        before = await conn.fetchrow("SELECT doc, doc_ci FROM scim_resources WHERE tenant_id = $1 AND id = $2",
                                     tenant, ids["bob"])
        await conn.execute("UPDATE scim_resources SET doc = jsonb_set(doc, '{displayName}', '\"Mallory\"') "
                           "WHERE tenant_id = $1 AND id = $2", tenant, ids["bob"])
        await conn.execute("DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND member_id = $3",
                           tenant, ids["eng"], ids["cat"])
        await conn.execute("INSERT INTO group_members VALUES ($1, $2, $3, 'User')", tenant, ids["all"], ids["dan"])
    rep = await rebuild_tenant(app_pool, tenant, check=True)
    bad = {t.table: t for t in rep.tables if not t.ok}
    assert set(bad) == {"scim_resources", "group_members"} and not rep.swapped
    [d] = bad["scim_resources"].differences
    assert d["key"] == {"id": ids["bob"]}
    assert d["live"][1]["displayName"] == "Mallory" and d["rebuilt"][1]["displayName"] == "Robert"
    assert sorted((x["key"]["group_id"], x["key"]["member_id"], x["live"] is None)
                  for x in bad["group_members"].differences) == sorted(
        [(ids["eng"], ids["cat"], True), (ids["all"], ids["dan"], False)])

    rep = await rebuild_tenant(app_pool, tenant)
    assert rep.swapped and {t.table for t in rep.tables if not t.ok} == {"scim_resources", "group_members"}
    assert (await rebuild_tenant(app_pool, tenant, check=True)).ok
    async with pg_pool.acquire() as conn:
        after = await conn.fetchrow("SELECT doc, doc_ci FROM scim_resources WHERE tenant_id = $1 AND id = $2",
                                    tenant, ids["bob"])
        members = await conn.fetch("SELECT member_id FROM group_members WHERE tenant_id = $1 AND group_id = $2",
                                   tenant, ids["eng"])
    assert after == before and {r["member_id"] for r in members} == {ids["bob"], ids["cat"]}


async def test_erased_user_rebuilds_without_personal_data(bus, store, app_pool, pg_pool, tenant):
    ids = await scim_history(bus, store, tenant)
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM scim_resources WHERE tenant_id = $1 AND id = $2", tenant, ids["ann"])
    assert (await rebuild_tenant(app_pool, tenant)).swapped
    async with pg_pool.acquire() as conn:
        import orjson
        doc = orjson.loads(await conn.fetchval("SELECT doc FROM scim_resources WHERE tenant_id = $1 AND id = $2",
                                               tenant, ids["ann"]))
    assert "userName" not in doc and "name" not in doc and "emails" not in doc and doc["active"] is False
    assert "title" not in doc and doc[ENT] == {"department": "Ops"} and doc["schemas"] == [USER, ENT]


async def test_directory_writes_made_meanwhile_are_refolded_under_the_lock(bus, store, app_pool, pg_pool, tenant):
    """The tables are staged as of the head read first; what commits before the lock (memberships, a
    deleted member of an untouched group, an update, a new user) is refolded for just the resources it
    touches, and a row corrupted before is still named and repaired."""
    ids = {k: _id() for k in ("ann", "bob", "cat", "dan", "eng", "ops")}
    for k in ("ann", "bob", "cat"):
        await bus.execute(tenant, CreateUser(ids[k], _user(f"{k}@x.com")))
    await bus.execute(tenant, CreateGroup(ids["eng"], normalize({"schemas": [GROUP], "displayName": "Eng", "members": [
        {"value": ids["ann"]}, {"value": ids["bob"]}]}, GROUP_RS)))
    await bus.execute(tenant, CreateGroup(ids["ops"], normalize({"schemas": [GROUP], "displayName": "Ops", "members": [
        {"value": ids["bob"]}, {"value": ids["cat"]}]}, GROUP_RS)))
    async with pg_pool.acquire() as conn:
        await conn.execute("UPDATE scim_resources SET doc = jsonb_set(doc, '{displayName}', '\"Mallory\"') "
                           "WHERE tenant_id = $1 AND id = $2", tenant, ids["ann"])
    await tp.ensure_current(bus.pool, tenant)        # only the directory is at stake

    async def write():
        await bus.execute(tenant, PatchGroup(ids["eng"], [
            {"op": "add", "path": "members", "value": [{"value": ids["cat"]}]},
            {"op": "remove", "path": f'members[value eq "{ids["ann"]}"]'}]))
        await bus.execute(tenant, DeleteUser(ids["bob"]))         # also leaves `ops`, which nothing else touches
        await bus.execute(tenant, PatchUser(ids["cat"], [{"op": "add", "path": "displayName", "value": "Cat"}]))
        await bus.execute(tenant, CreateUser(ids["dan"], _user("dan@x.com")))

    with writes_before_the_lock(write):
        rep = await rebuild_tenant(app_pool, tenant)
    bad = {t.table: t for t in rep.tables if not t.ok}
    assert set(bad) == {"scim_resources"} and rep.swapped and rep.head > rep.events
    assert [d["key"] for d in bad["scim_resources"].differences] == [{"id": ids["ann"]}]
    assert (await rebuild_tenant(app_pool, tenant, check=True)).ok
    async with pg_pool.acquire() as conn:
        members = await conn.fetch("SELECT group_id, member_id FROM group_members WHERE tenant_id = $1", tenant)
        names = await conn.fetchval("SELECT count(*) FROM scim_resources WHERE tenant_id = $1", tenant)
    assert sorted((r["group_id"], r["member_id"]) for r in members) == sorted(
        [(ids["eng"], ids["cat"]), (ids["ops"], ids["cat"])])
    assert names == 5           # ann, cat, dan, eng, ops
