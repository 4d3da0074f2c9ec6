"""The licence event stream: live, resumable with Last-Event-ID, timer-driven at term ends."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
from aiohttp import ClientSession, ClientTimeout

from ledger.licence_admin import AdminAssign, AdminRevoke, CreatePool, DefineProduct
from test_licence_admin import add_users


async def read_events(resp, n, timeout=5.0):
    """Parse `n` SSE events (ignoring pings/comments)."""
    out, cur = [], {}
    async def go():
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if "data" in cur:
                    out.append(dict(cur))
                    if len(out) >= n:
                        return
                cur.clear()
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            cur[k] = v.lstrip(" ")
    await asyncio.wait_for(go(), timeout)
    return out


async def open_stream(srv, tt, last_id=None):
    s = ClientSession(timeout=ClientTimeout(total=None))
    h = {"Authorization": f"Bearer {tt['entitlement']}"}
    if last_id:
        h["Last-Event-ID"] = last_id
    resp = await s.get(str(srv.make_url(f"/v1/{tt['tenant']}/events/licences")), headers=h)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    return s, resp


async def test_live_and_resumable(service, tenant_tokens, pg_pool):
    srv, rt = service
    t = tenant_tokens["tenant"]
    await add_users(pg_pool, t, {"a": {}, "b": {}})
    now = datetime.now(timezone.utc)
    await rt.bus.execute(t, DefineProduct("x", "X"))
    await rt.bus.execute(t, CreatePool("p1", "x", 5, now - timedelta(days=1), now + timedelta(days=10)))
    s, resp = await open_stream(srv, tenant_tokens)
    try:
        await asyncio.sleep(0.2)
        await rt.bus.execute(t, AdminAssign("p1", "a"))
        (ev,) = await read_events(resp, 1)
        assert ev["event"] == "SeatAssigned" and orjson.loads(ev["data"])["user_id"] == "a"
        first_id = ev["id"]
    finally:
        resp.close(); await s.close()
    await rt.bus.execute(t, AdminAssign("p1", "b"))       # while disconnected
    await rt.bus.execute(t, AdminRevoke("p1", "a"))
    s, resp = await open_stream(srv, tenant_tokens, last_id=first_id)
    try:
        evs = await read_events(resp, 2)
        assert [(e["event"], orjson.loads(e["data"])["user_id"]) for e in evs] == \
            [("SeatAssigned", "b"), ("SeatReleased", "a")]
        assert int(evs[0]["id"]) > int(first_id)
    finally:
        resp.close(); await s.close()


async def test_term_end_is_sent_at_its_instant(service, tenant_tokens, pg_pool):
    srv, rt = service
    t = tenant_tokens["tenant"]
    await add_users(pg_pool, t, {"a": {}})
    now = datetime.now(timezone.utc)
    end = now + timedelta(seconds=1)
    await rt.bus.execute(t, DefineProduct("x", "X"))
    await rt.bus.execute(t, CreatePool("p1", "x", 1, now - timedelta(days=1), end))
    await rt.bus.execute(t, AdminAssign("p1", "a"))
    s, resp = await open_stream(srv, tenant_tokens)
    try:
        (ev,) = await read_events(resp, 1, timeout=5)
        got = datetime.now(timezone.utc)
        assert ev["event"] == "TermEnded" and "id" not in ev
        assert orjson.loads(ev["data"])["users"] == ["a"]
        assert end <= got < end + timedelta(milliseconds=500)
    finally:
        resp.close(); await s.close()
