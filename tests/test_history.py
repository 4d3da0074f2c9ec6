"""History questions: the temporal projection and the replay engine, with exact expected answers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledger.events import NewEvent
from ledger.licences import (PoolCreated, PoolResized, SeatAssigned, SeatGrantsChanged, SeatQueued, SeatReleased,
                             SeatSuspended, LicenceExpired)
from ledger.replay import licence_replay
from ledger.store import StreamChange
from projections import temporal as tp

D0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def day(n: float) -> datetime:
    return D0 + timedelta(days=n)


async def put(store, tenant, pool, *events):
    """Append (event, effective_at) pairs to pool-<pool> in one transaction; returns the last seq."""
    rec = await store.append(tenant, [StreamChange(f"pool-{pool}", None, [NewEvent(e, at) for e, at in events])])
    return rec[-1].seq


def assigned(pool, user, grants=("r1",), prio=10):
    return SeatAssigned(pool_id=pool, user_id=user, grants=list(grants), priority=prio)


async def both(app_pool, tenant, at, known=None, pool="p1"):
    """(projection holders, replay holders) as comparable tuples."""
    head = await tp.ensure_current(app_pool, tenant)
    async with app_pool.acquire() as conn:
        k = await tp.resolve_known(conn, tenant, known, head)
        _, rows = await tp.holders(conn, tenant, [pool], at, k, 10_000)
        rp = (await licence_replay(conn, tenant, known)).holders(at, [pool])
    key = lambda d: (d["user_id"], d["state"], tuple(d["grants"]))  # noqa: E731
    return [key(r) for r in rows], [key(r) for r in rp]


async def test_backdated_release_keeps_the_old_belief(store, app_pool, tenant):
    await put(store, tenant, "p1", (PoolCreated(pool_id="p1", product_id="prod", seats=5, term_start=day(0),
                                                term_end=day(365)), day(0)))
    await put(store, tenant, "p1", (assigned("p1", "u1"), day(1)), (assigned("p1", "u2"), day(1)))
    before = await put(store, tenant, "p1", (SeatGrantsChanged(pool_id="p1", user_id="u1", grants=["r2"],
                                                               priority=5), day(5)))
    # the correction: u1's seat ended on the 3rd, recorded now (after the grants change on the 5th)
    await put(store, tenant, "p1", (SeatReleased(pool_id="p1", user_id="u1", reason="admin"), day(3)))

    for at, known, want in [
        (day(2), None, [("u1", "active", ("r1",)), ("u2", "active", ("r1",))]),
        (day(4), None, [("u2", "active", ("r1",))]),
        (day(6), None, [("u2", "active", ("r1",))]),
        (day(4), before, [("u1", "active", ("r1",)), ("u2", "active", ("r1",))]),
        (day(6), before, [("u1", "active", ("r2",)), ("u2", "active", ("r1",))]),
        (day(0.5), before, []),
    ]:
        proj, rep = await both(app_pool, tenant, at, known)
        assert proj == want == rep, (at, known)

    async with app_pool.acquire() as conn:
        tl = await tp.user_timeline(conn, tenant, "u1", 10 ** 9)
        assert [(i["from"], i["to"], i["closed_by"]["reason"] if i["closed_by"] else None) for i in tl] == \
            [(day(1).isoformat(), day(3).isoformat(), "admin")]
        old = await tp.user_timeline(conn, tenant, "u1", before)
        assert [(i["from"], i["to"], i["grants"]) for i in old] == \
            [(day(1).isoformat(), day(5).isoformat(), ["r1"]), (day(5).isoformat(), None, ["r2"])]


# ---- over HTTP: the SCIM lifecycle, holders and the SCIM-as-of view at instants between events --------

async def test_http_lifecycle_with_backdated_correction(service, tenant_tokens, store):
    import asyncio
    import orjson
    from aiohttp import ClientSession
    from ledger.erasure import erase
    srv, rt = service
    t = tenant_tokens["tenant"]
    auth = lambda s: {"Authorization": f"Bearer {tenant_tokens[s]}"}  # noqa: E731
    urn = "urn:ietf:params:scim:schemas:core:2.0:"
    marks = []

    async with ClientSession() as s:
        async def call(method, path, scope="admin", body=None, **params):
            async with s.request(method, srv.make_url(path), json=body, params=params, headers=auth(scope)) as r:
                raw = await r.read()
                return r.status, (orjson.loads(raw) if raw else None)

        async def mark():
            await asyncio.sleep(0.01)
            marks.append(datetime.now(timezone.utc))
            await asyncio.sleep(0.01)

        st, g = await call("POST", f"/scim/v2/{t}/Groups", "scim", {"schemas": [urn + "Group"], "displayName": "Design"})
        assert st == 201, g
        assert (await call("POST", f"/v1/{t}/products", body={"product_id": "pro", "name": "Pro"}))[0] < 300
        assert (await call("POST", f"/v1/{t}/pools", body={
            "pool_id": "p1", "product_id": "pro", "seats": 5, "term_start": day(0).isoformat(),
            "term_end": "2099-01-01T00:00:00Z"}))[0] < 300
        assert (await call("POST", f"/v1/{t}/pools/p1/rules", body={
            "rule_id": "design", "kind": "group", "group_id": g["id"]}))[0] < 300
        await mark()                                                            # 0: nothing yet
        st, u = await call("POST", f"/scim/v2/{t}/Users", "scim", {"schemas": [urn + "User"], "userName": "ada",
                                                                   "name": {"givenName": "Ada"}})
        uid = u["id"]
        await mark()                                                            # 1: user, no seat
        ops = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}
        await call("PATCH", f"/scim/v2/{t}/Groups/{g['id']}", "scim",
                   {**ops, "Operations": [{"op": "add", "path": "members", "value": [{"value": uid}]}]})
        await mark()                                                            # 2: holds
        correction_at = marks[-1]
        await mark()                                                            # 3: holds (before correction)
        await call("PATCH", f"/scim/v2/{t}/Users/{uid}", "scim",
                   {**ops, "Operations": [{"op": "replace", "path": "active", "value": False}]})
        await mark()                                                            # 4: deactivated, released
        await call("PATCH", f"/scim/v2/{t}/Users/{uid}", "scim",
                   {**ops, "Operations": [{"op": "replace", "path": "active", "value": True}]})
        await mark()                                                            # 5: reactivated, holds
        before_correction = (await store.head(t))[0]
        # the correction: the first holding really ended at marks[2] (recorded now)
        await store.append(t, [StreamChange("pool-p1", None, [NewEvent(
            SeatReleased(pool_id="p1", user_id=uid, reason="correction"), correction_at)])])
        await call("DELETE", f"/scim/v2/{t}/Users/{uid}", "scim")
        await mark()                                                            # 6: deleted

        async def holders(i, known=None):
            q = {"asOf": marks[i].isoformat()} | ({"knownAt": str(known)} if known is not None else {})
            st, body = await call("GET", f"/v1/{t}/history/pools/p1/holders", "auditor", **q)
            assert st == 200, body
            st, rp = await call("GET", f"/v1/{t}/history/pools/p1/holders", "auditor", engine="replay", **q)
            assert [h["user_id"] for h in body["holders"]] == [h["user_id"] for h in rp["holders"]]
            assert body["total"] == len(body["holders"])
            return [h["user_id"] for h in body["holders"]]

        assert [await holders(i) for i in range(7)] == [[], [], [], [], [], [uid], []]
        assert [await holders(i, before_correction) for i in range(7)] == [[], [], [uid], [uid], [], [uid], [uid]]
        assert [await holders(i, marks[5].isoformat()) for i in range(7)] == \
            [[], [], [uid], [uid], [], [uid], [uid]]

        st, lic = await call("GET", f"/v1/{t}/history/users/{uid}/licences", "auditor", asOf=marks[5].isoformat())
        assert [x["pool_id"] for x in lic["licences"]] == ["p1"] and lic["licences"][0]["grants"] == ["design"]
        st, usage = await call("GET", f"/v1/{t}/history/usage", "auditor", asOf=marks[5].isoformat())
        assert usage["pools"] == [{"pool_id": "p1", "product_id": "pro", "seats": 5, "used": 1, "active": 1,
                                   "suspended": 0, "waiting": 0}]
        st, tl = await call("GET", f"/v1/{t}/history/users/{uid}/timeline", "auditor")
        assert [(i["closed_by"] or {}).get("reason") for i in tl["intervals"]] == ["correction", "deleted"]
        st, ptl = await call("GET", f"/v1/{t}/history/pools/p1/timeline", "auditor")
        assert len(ptl["intervals"]) == 2
        async with s.get(srv.make_url(f"/v1/{t}/history/products/pro/holders/export"), headers=auth("auditor"),
                         params={"asOf": marks[5].isoformat()}) as r:
            lines = (await r.read()).splitlines()
        assert len(lines) == 1

        # the user as it was
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[0].isoformat())
        assert st == 404
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[1].isoformat())
        assert st == 200 and doc["userName"] == "ada" and doc["name"]["givenName"] == "Ada"
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[4].isoformat())
        assert doc["active"] is False
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[5].isoformat())
        assert doc["active"] is True
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[6].isoformat())
        assert st == 404 and "deleted_at" in doc
        st, grp = await call("GET", f"/v1/{t}/history/groups/{g['id']}", "auditor", asOf=marks[2].isoformat())
        assert grp["members"] == [{"value": uid}] and grp["displayName"] == "Design"
        await erase(store, t, uid)
        st, doc = await call("GET", f"/v1/{t}/history/users/{uid}", "auditor", asOf=marks[5].isoformat())
        assert doc["erased"] is True and "userName" not in doc and "name" not in doc
        # scopes and parameters
        assert (await call("GET", f"/v1/{t}/history/usage", "scim"))[0] == 403
        st, err = await call("GET", f"/v1/{t}/history/usage", "auditor", asOf="yesterday")
        assert st == 400 and err["field"] == "asOf"


def test_bench_history_quick():
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "scripts/bench_history.py", "--quick"], cwd=root, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("holders_page_p50_ms", "user_licences_p50_ms", "rebuild_events_per_s", "verify_events_per_s",
              "export_events_per_s", "baseline_replay_holders_ms"):
        assert res[k] > 0
