"""Per-tenant rate limiting: the token bucket itself, and over real HTTP on a service configured
with a small rate — 429 with Retry-After and a SCIM error body, a 429 writes nothing, success
after waiting, tenants are isolated, the rate is shared among live processes."""
from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from api import ratelimit
from api.ratelimit import LIMITER, RateLimiter, retry_after

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_bucket_refills_at_the_rate_up_to_the_burst():
    c = Clock()
    lim = RateLimiter(rate=2, burst=3, clock=c)
    assert [lim.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.take("a")
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    c.t += 0.5
    assert lim.take("a") == 0.0
    assert lim.take("a") > 0
    assert lim.take("b") == 0.0                   # another tenant has its own bucket
    c.t += 1000                                   # refills to the burst, not beyond
    assert [lim.take("a") for _ in range(4)][-1] > 0
    assert retry_after(0.0001) == "1" and retry_after(2.1) == "3"


def test_rate_is_divided_among_live_processes():
    c = Clock()
    lim = RateLimiter(rate=10, burst=10, clock=c)
    lim.processes = 2
    assert sum(lim.take("a") == 0.0 for _ in range(10)) == 5
    assert lim.take("a") == pytest.approx(0.2)    # 1 token at 5/s


def test_configuration_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEATLEDGER_RATE_PER_S", "7.5")
    monkeypatch.setenv("SEATLEDGER_RATE_BURST", "9")
    lim = RateLimiter.from_env()
    assert (lim.rate, lim.burst) == (7.5, 9.0)
    monkeypatch.setenv("SEATLEDGER_RATE_PER_S", "0")
    with pytest.raises(ValueError):
        RateLimiter.from_env()
    monkeypatch.delenv("SEATLEDGER_RATE_PER_S")
    monkeypatch.delenv("SEATLEDGER_RATE_BURST")
    assert RateLimiter.from_env().rate >= 500


def test_the_check_is_cheap():
    lim = RateLimiter(rate=1e9, burst=1e9)
    tenants = [f"t{i}" for i in range(1000)]
    t0 = time.perf_counter()
    for i in range(100_000):
        lim.take(tenants[i % 1000])
    per_call = (time.perf_counter() - t0) / 100_000
    assert per_call < 0.3e-3, per_call


async def _tenant(rt) -> dict:
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    t = "t-" + uuid.uuid4().hex[:10]
    await rt.bus.execute(t, CreateTenant(t, t))
    out = {"tenant": t}
    for s in ("scim", "admin"):
        cmd = IssueToken(s)
        await rt.bus.execute(t, cmd)
        out[s] = cmd.token
    return out


@pytest.fixture
async def limited(service, monkeypatch):
    """A second service process (same database) limited to 1 request/s with a burst of 3."""
    from api.app import make_app
    _, rt = service
    monkeypatch.setenv("SEATLEDGER_RATE_PER_S", "1")
    monkeypatch.setenv("SEATLEDGER_RATE_BURST", "3")
    monkeypatch.setattr(ratelimit, "HEARTBEAT_SECONDS", 3600)   # one count, at start
    srv = TestServer(make_app(rt), host="127.0.0.1")
    await srv.start_server()
    # The session's service is alive too: this process gets its share of the tenant's rate.
    assert srv.app[LIMITER].processes >= 2
    srv.app[LIMITER].processes = 1          # the test below reasons about this process alone
    yield srv, rt
    await srv.close()


async def _post_user(s: ClientSession, srv, tenant: str, token: str, name: str):
    async with s.post(srv.make_url(f"/scim/v2/{tenant}/Users"),
                      data=orjson.dumps({"schemas": [USER_URN], "userName": name}),
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/scim+json"}) as r:
        return r.status, orjson.loads(await r.read()), r.headers


async def _count(s, srv, tenant, token, name) -> int:
    async with s.get(srv.make_url(f"/scim/v2/{tenant}/Users"),
                     params={"filter": f'userName eq "{name}"'},
                     headers={"Authorization": f"Bearer {token}"}) as r:
        return (orjson.loads(await r.read()))["totalResults"]


async def test_429_with_retry_after_then_success_and_tenants_are_isolated(limited, service):
    srv, rt = limited
    main, _ = service
    a, b = await _tenant(rt), await _tenant(rt)
    async with ClientSession() as s:
        for i in range(3):                                   # the burst
            st, _, _ = await _post_user(s, srv, a["tenant"], a["scim"], f"burst{i}")
            assert st == 201
        st, body, headers = await _post_user(s, srv, a["tenant"], a["scim"], "retried")
        assert st == 429
        assert body["schemas"] == [ERROR_URN] and body["status"] == "429"
        wait = int(headers["Retry-After"])
        assert wait >= 1
        # tenant b is unaffected
        st, _, _ = await _post_user(s, srv, b["tenant"], b["scim"], "retried")
        assert st == 201
        # the 429 wrote nothing (counted through the session's service, not limited here)
        assert await _count(s, main, a["tenant"], a["scim"], "retried") == 0
        await asyncio.sleep(wait)
        st, body, _ = await _post_user(s, srv, a["tenant"], a["scim"], "retried")
        assert st == 201, body                               # the retry is safe: created once
        assert await _count(s, main, a["tenant"], a["scim"], "retried") == 1
        # /v1 admin paths are limited too (JSON body, same header)
        got = []
        for _ in range(4):
            async with s.get(srv.make_url(f"/v1/{a['tenant']}/scim/failures"),
                             headers={"Authorization": f"Bearer {a['admin']}"}) as r:
                got.append((r.status, r.headers.get("Retry-After")))
        assert got[-1][0] == 429 and int(got[-1][1]) >= 1


async def test_a_429_writes_nothing(limited, service):
    srv, rt = limited
    main, _ = service
    a = await _tenant(rt)
    async with ClientSession() as s:
        statuses = [(await _post_user(s, srv, a["tenant"], a["scim"], f"n{i}"))[0] for i in range(6)]
        assert statuses[:3] == [201, 201, 201] and set(statuses[3:]) == {429}
        for i in range(6):
            assert await _count(s, main, a["tenant"], a["scim"], f"n{i}") == (1 if i < 3 else 0)


async def test_heartbeat_counts_live_processes(service):
    from api.ratelimit import Heartbeat
    _, rt = service
    l1, l2 = RateLimiter(10, 10), RateLimiter(10, 10)
    h1, h2 = Heartbeat(rt.pool, l1), Heartbeat(rt.pool, l2)
    n1 = await h1.beat()
    n2 = await h2.beat()
    assert n2 == n1 + 1
    await h1.stop()
    await h2.stop()
    assert await Heartbeat(rt.pool, RateLimiter(10, 10)).beat() == n1
