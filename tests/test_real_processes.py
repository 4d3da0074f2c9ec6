"""Real service processes (`seatledger serve`), as they run in production: two of them on one
database under a burst of SCIM creates, and one killed with SIGKILL in the middle of a burst.

What must hold (issue #4, and the guide's "kill -9 mid-burst"):
* the seat limit holds across processes: exactly `seats` active, the rest waiting;
* an answered write is durable (a 201 means committed), an unanswered one is all or nothing: after
  a restart every user exists once or not at all, an IdP retry of the same create gets 201 or a
  409 `uniqueness`, never a duplicate; the chain verifies and the reconciler finds no drift.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import ClientError, ClientSession, ClientTimeout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
NOW = datetime.now(timezone.utc)


def _cli(env, *args):
    p = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, **env})
    return p


@pytest.fixture(scope="module")
def cli_env(dsns):
    if dsns.embedded:
        from urllib.parse import urlsplit
        return {"SEATLEDGER_DATABASE": urlsplit(dsns.migrate).path.lstrip("/")}
    return {"SEATLEDGER_DATABASE_URL": dsns.migrate}


class Service:
    """One `seatledger serve` process on its own port."""

    def __init__(self, env):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                                     cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    async def ready(self):
        async with ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return self
                except ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited: {self.proc.stderr.read()[-2000:]}")
                await asyncio.sleep(0.1)
        raise AssertionError("serve did not come up")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def tenant_env(cli_env):
    tenant = "proc-" + os.urandom(4).hex()
    p = _cli(cli_env, "tenant", "create", tenant, "--json")
    assert p.returncode == 0, p.stderr
    tokens = {"scim": json.loads(p.stdout)["token"]}
    p = _cli(cli_env, "token", "create", tenant, "--scope", "admin", "--json")
    assert p.returncode == 0, p.stderr
    tokens["admin"] = json.loads(p.stdout)["token"]
    return tenant, tokens


async def _admin(s, base, tenant, tokens, method, path, body=None):
    async with s.request(method, f"{base}/v1/{tenant}{path}", json=body,
                         headers={"Authorization": f"Bearer {tokens['admin']}"}) as r:
        out = await r.json(content_type=None)
        assert r.status == 200, out
        return out


async def _pool(s, base, tenant, tokens, seats):
    await _admin(s, base, tenant, tokens, "POST", "/products", {"product_id": "design-pro", "name": "Design Pro"})
    await _admin(s, base, tenant, tokens, "POST", "/pools", {
        "pool_id": "p1", "product_id": "design-pro", "seats": seats, "overage_policy": "reject",
        "term_start": (NOW - timedelta(days=1)).isoformat(), "term_end": (NOW + timedelta(days=365)).isoformat()})
    await _admin(s, base, tenant, tokens, "POST", "/pools/p1/rules",
                 {"rule_id": "everyone", "priority": 10, "kind": "all_active"})


async def _create(s, base, tenant, tokens, name):
    async with s.post(f"{base}/scim/v2/{tenant}/Users",
                      json={"schemas": [USER_URN], "userName": name, "active": True},
                      headers={"Authorization": f"Bearer {tokens['scim']}",
                               "Content-Type": "application/scim+json"}) as r:
        return r.status, await r.json(content_type=None)


async def _seats(s, base, tenant, tokens, state):
    body = await _admin(s, base, tenant, tokens, "GET", f"/pools/p1/holders?state={state}&limit=10000")
    return [x["user_id"] for x in body["items"]]


def _verified_and_no_drift(cli_env, tenant):
    p = _cli(cli_env, "verify", "--tenant", tenant)
    assert p.returncode == 0 and "intact" in p.stdout, p.stdout + p.stderr
    p = _cli(cli_env, "reconcile", "--tenant", tenant, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["drift"] == []


async def test_two_processes_hundred_creates_ten_seats(cli_env, tenant_env):
    tenant, tokens = tenant_env
    a, b = Service(cli_env), Service(cli_env)
    try:
        await asyncio.gather(a.ready(), b.ready())
        async with ClientSession(timeout=ClientTimeout(total=120)) as s:
            await _pool(s, a.base, tenant, tokens, 10)

            async def resize_up_and_back():
                await asyncio.sleep(0.05)
                await _admin(s, b.base, tenant, tokens, "POST", "/pools/p1/resize", {"seats": 12})
                await _admin(s, a.base, tenant, tokens, "POST", "/pools/p1/resize", {"seats": 10})

            results = await asyncio.gather(
                *[_create(s, (a, b)[i % 2].base, tenant, tokens, f"user{i:03}") for i in range(100)],
                resize_up_and_back())
            assert all(st == 201 for st, _ in results[:100]), [x for x in results[:100] if x[0] != 201][:3]
            active = await _seats(s, a.base, tenant, tokens, "active")
            waiting = await _seats(s, b.base, tenant, tokens, "waiting")
            assert len(active) == 10 and len(waiting) == 90
            assert not set(active) & set(waiting)
    finally:
        a.stop()
        b.stop()
    _verified_and_no_drift(cli_env, tenant)


async def test_kill9_mid_burst_loses_nothing_answered_and_half_writes_nothing(cli_env, tenant_env):
    tenant, tokens = tenant_env
    names = [f"burst{i:03}" for i in range(150)]
    a = Service(cli_env)
    try:
        await a.ready()
        async with ClientSession(timeout=ClientTimeout(total=60)) as s:
            await _pool(s, a.base, tenant, tokens, 100)
            answered: dict[str, str] = {}
            sem = asyncio.Semaphore(24)

            async def one(name):
                async with sem:
                    try:
                        st, body = await _create(s, a.base, tenant, tokens, name)
                    except (ClientError, asyncio.TimeoutError):
                        return                      # the process died under this request
                    assert st == 201, body
                    answered[name] = body["id"]

            async def killer():
                # at an arbitrary moment relative to the group commits, ~24 requests in flight
                while len(answered) < 40:
                    await asyncio.sleep(0.001)
                a.kill9()

            await asyncio.gather(killer(), *[one(n) for n in names])
        assert a.proc.returncode == -signal.SIGKILL
        assert 40 <= len(answered) < len(names)
    finally:
        a.stop()

    b = Service(cli_env)
    try:
        await b.ready()
        async with ClientSession(timeout=ClientTimeout(total=120)) as s:
            # every answered create is durable
            for name, uid in answered.items():
                async with s.get(f"{b.base}/scim/v2/{tenant}/Users/{uid}",
                                 headers={"Authorization": f"Bearer {tokens['scim']}"}) as r:
                    assert r.status == 200, name
            # the IdP retries everything it was not answered: each one is created or already there
            retried = await asyncio.gather(*[_create(s, b.base, tenant, tokens, n) for n in names if n not in answered])
            for st, body in retried:
                assert st == 201 or (st == 409 and body["scimType"] == "uniqueness"), body
            async with s.get(f"{b.base}/scim/v2/{tenant}/Users?count=1",
                             headers={"Authorization": f"Bearer {tokens['scim']}"}) as r:
                assert (await r.json(content_type=None))["totalResults"] == len(names)
            active = await _seats(s, b.base, tenant, tokens, "active")
            waiting = await _seats(s, b.base, tenant, tokens, "waiting")
            assert len(active) == 100 and len(waiting) == 50
    finally:
        b.stop()
    _verified_and_no_drift(cli_env, tenant)
