"""The directory's deciders through the command bus: in-batch decisions, atomic appends, personal
data in events, the member-PATCH read planning."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from ledger.directory import (CreateGroup, CreateUser, DeleteUser, PatchGroup, PatchUser, ReplaceUser,
                              member_patch_reads, split_personal, _diff, GROUP_RS)
from ledger.executor import CommandRejected

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def uid() -> str:
    return str(uuid.uuid4())


def user(name: str, **kw) -> dict:
    return {"schemas": [USER], "userName": name, **kw}


async def test_duplicate_names_in_one_batch(bus, tenant):
    before = bus.batches
    results = await asyncio.gather(*[bus.execute(tenant, CreateUser(uid(), user(n)))
                                     for n in ("same@x.com", "SAME@x.com", "other@x.com")],
                                   return_exceptions=True)
    assert bus.batches - before == 1
    assert isinstance(results[1], CommandRejected) and results[1].code == "uniqueness"
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)


async def test_rename_frees_the_name_within_the_batch(bus, tenant):
    a = uid()
    await bus.execute(tenant, CreateUser(a, user("old@x.com")))
    b = uid()
    res = await asyncio.gather(
        bus.execute(tenant, PatchUser(a, [{"op": "replace", "path": "userName", "value": "new@x.com"}])),
        bus.execute(tenant, CreateUser(b, user("OLD@x.com"))),
        return_exceptions=True)
    assert not any(isinstance(r, Exception) for r in res), res
    async with bus.pool.acquire() as conn:
        names = await conn.fetch("SELECT id, doc->>'userName' AS n FROM scim_resources WHERE tenant_id = $1 "
                                 "ORDER BY n", tenant)
    assert {(r["id"], r["n"]) for r in names} == {(a, "new@x.com"), (b, "OLD@x.com")}


async def test_delete_in_same_batch_as_group_add_removes_membership(bus, tenant):
    u, g = uid(), uid()
    await bus.execute(tenant, CreateUser(u, user("m@x.com")))
    await bus.execute(tenant, CreateGroup(g, {"schemas": [GROUP], "displayName": "G"}))
    await asyncio.gather(
        bus.execute(tenant, PatchGroup(g, [{"op": "add", "path": "members", "value": [{"value": u}]}])),
        bus.execute(tenant, DeleteUser(u)))
    async with bus.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM group_members WHERE tenant_id = $1", tenant) == 0
        version = await conn.fetchval("SELECT version FROM scim_resources WHERE tenant_id = $1 AND id = $2", tenant, g)
        types = [r["type"] for r in await conn.fetch(
            "SELECT type FROM events WHERE tenant_id = $1 AND stream = $2 ORDER BY stream_version", tenant, f"group-{g}")]
    assert types == ["GroupCreated", "MembersAdded", "MembersRemoved"] and version == 3


async def test_if_match_and_not_found(bus, tenant):
    u = uid()
    await bus.execute(tenant, CreateUser(u, user("im@x.com")))
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, ReplaceUser(u, user("im@x.com"), if_match='W/"3"'))
    assert e.value.status == 412
    await bus.execute(tenant, ReplaceUser(u, user("im@x.com", nickName="n"), if_match='"1"'))
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, DeleteUser(uid()))
    assert e.value.status == 404


async def test_noop_patch_writes_nothing(bus, tenant, store):
    u = uid()
    await bus.execute(tenant, CreateUser(u, user("noop@x.com", displayName="D")))
    await bus.execute(tenant, PatchUser(u, [{"op": "replace", "path": "displayName", "value": "D"}]))
    assert len(await store.read_stream(tenant, f"user-{u}")) == 1


def test_split_personal_and_diff():
    doc = {"schemas": [USER, ENT], "userName": "u", "active": True, "roles": [{"value": "r"}],
           ENT: {"employeeNumber": "7", "department": "Ops"}}
    public, personal = split_personal(doc)
    assert personal == {"userName": "u", ENT: {"employeeNumber": "7"}}
    assert public[ENT] == {"department": "Ops"} and "userName" not in public
    changed, removed = _diff(doc, {"schemas": [USER], "userName": "v", "active": True})
    assert changed == {"userName": "v"} and sorted(removed) == sorted(["roles", f"{ENT}:employeeNumber", f"{ENT}:department"])


def test_member_patch_reads_names_ids_and_full_replacement():
    ids, full = member_patch_reads([
        {"op": "Add", "path": "members", "value": [{"value": "a", "$ref": None}]},
        {"op": "remove", "path": 'members[value eq "b"]'},
        {"op": "Remove", "path": "members", "value": [{"value": "c"}]}], GROUP_RS)
    assert ids == {"a", "b", "c"} and not full
    ids, full = member_patch_reads([{"op": "replace", "path": "members", "value": [{"value": "a"}]}], GROUP_RS)
    assert "a" in ids and full
    ids, full = member_patch_reads([{"op": "replace", "value": {"displayName": "x"}}], GROUP_RS)
    assert ids == set() and not full
