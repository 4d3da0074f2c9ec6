"""Tenants, tokens and scopes through a real HTTP server."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession

from ledger.executor import CommandRejected
from ledger.tenancy import CreateTenant
from ledger.tokens import IssueToken, RevokeToken
from service import serving


@pytest.fixture(scope="module")
async def server(dsns, app_pool, store):
    async with serving(dsns, app_pool, store) as running:
        yield running


async def new_tenant(rt, name, scopes=("scim",)):
    await rt.bus.execute(name, CreateTenant(name, name))
    toks = {}
    for s in scopes:
        cmd = IssueToken(s)
        await rt.bus.execute(name, cmd)
        toks[s] = cmd
    return toks


def url(srv, path):
    return str(srv.make_url(path))


async def get(srv, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as s:
        async with s.get(url(srv, path), headers=headers) as r:
            return r.status, await r.json(content_type=None), r.headers


async def test_scim_token_reads_its_tenant(server, tenant):
    srv, rt = server
    toks = await new_tenant(rt, tenant)
    status, body, headers = await get(srv, f"/scim/v2/{tenant}/ServiceProviderConfig", toks["scim"].token)
    assert status == 200 and body["patch"]["supported"] is True
    assert headers["Content-Type"].startswith("application/scim+json")


async def test_cross_tenant_is_403_whatever_the_path(server, tenant):
    srv, rt = server
    a = await new_tenant(rt, tenant + "-a", ("scim", "auditor"))
    await new_tenant(rt, tenant + "-b")
    b = tenant + "-b"
    for path in (f"/scim/v2/{b}/ServiceProviderConfig", f"/scim/v2/{b}/Users", f"/scim/v2/{b}/NoSuchThing/x",
                 f"/v1/{b}/audit/head"):
        status, body, _ = await get(srv, path, a["scim"].token)
        assert status == 403, path
    status, body, _ = await get(srv, f"/v1/{b}/audit/head", a["auditor"].token)
    assert status == 403
    assert body["error"].startswith("this token belongs to another tenant")


async def test_wrong_scope_is_403(server, tenant):
    srv, rt = server
    toks = await new_tenant(rt, tenant, ("scim", "auditor", "billing"))
    assert (await get(srv, f"/v1/{tenant}/audit/head", toks["scim"].token))[0] == 403
    assert (await get(srv, f"/v1/{tenant}/audit/head", toks["billing"].token))[0] == 403
    status, body, _ = await get(srv, f"/v1/{tenant}/audit/head", toks["auditor"].token)
    assert status == 200 and body["seq"] >= 4
    status, body, _ = await get(srv, f"/scim/v2/{tenant}/ServiceProviderConfig", toks["auditor"].token)
    assert status == 403 and body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "403"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer slt_x_y"])
async def test_missing_or_bad_token_is_401(server, tenant, header):
    srv, rt = server
    await new_tenant(rt, tenant)
    async with ClientSession() as s:
        async with s.get(url(srv, f"/scim/v2/{tenant}/ServiceProviderConfig"),
                         headers={"Authorization": header} if header else {}) as r:
            assert r.status == 401
            body = await r.json(content_type=None)
            assert body["status"] == "401" and "detail" in body
            assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_revoked_token_stops_working_and_rotation_overlaps(server, tenant, pg_pool):
    srv, rt = server
    old = (await new_tenant(rt, tenant))["scim"]
    new = IssueToken("scim")
    await rt.bus.execute(tenant, new)
    path = f"/scim/v2/{tenant}/ServiceProviderConfig"
    assert (await get(srv, path, old.token))[0] == 200
    assert (await get(srv, path, new.token))[0] == 200        # both live during rotation
    await rt.bus.execute(tenant, RevokeToken(old.token_id))
    await asyncio.sleep(1.1)                                   # the auth cache's lifetime
    assert (await get(srv, path, old.token))[0] == 401
    assert (await get(srv, path, new.token))[0] == 200
    async with pg_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT secret_hash, last_used_at FROM api_tokens WHERE token_id = $1", new.token_id)
        assert row["last_used_at"] is not None
        assert new.secret.encode() not in bytes(row["secret_hash"])
        ledger_text = await conn.fetchval("SELECT string_agg(data::text, ' ') FROM events WHERE tenant_id = $1", tenant)
    assert new.secret not in ledger_text and old.secret not in ledger_text


async def test_token_for_unknown_tenant_or_scope_is_refused(server, tenant):
    srv, rt = server
    with pytest.raises(CommandRejected):
        await rt.bus.execute(tenant + "-none", IssueToken("scim"))
    await new_tenant(rt, tenant)
    with pytest.raises(CommandRejected):
        await rt.bus.execute(tenant, IssueToken("root"))


async def test_cached_token_admits_only_its_exact_secret_and_concurrent_first_uses_agree(server, tenant):
    srv, rt = server
    tok = (await new_tenant(rt, tenant))["scim"]
    path = f"/scim/v2/{tenant}/ServiceProviderConfig"
    # many first uses at once share one read of the token's row; every one is admitted
    statuses = await asyncio.gather(*[get(srv, path, tok.token) for _ in range(40)])
    assert {s[0] for s in statuses} == {200}
    # while the right header is cached, the same token id with another secret is still refused
    forged = f"slt_{tok.token_id}_{'x' * len(tok.secret)}"
    assert (await get(srv, path, forged))[0] == 401
    assert (await get(srv, path, tok.token + "x"))[0] == 401
    assert (await get(srv, path, tok.token))[0] == 200
