"""The failed-request log over real HTTP: rejected SCIM requests (409 uniqueness, 400 invalidFilter,
400 invalidValue, 401, 404, 415, 413, 429 …) are listed for the tenant's admin, newest first, paged,
without bodies or personal values; bounded per tenant; only existing tenants."""
from __future__ import annotations

import uuid

import orjson
import pytest

from api.failed_requests import FailureLog, redact, safe_path
from test_scim_http import PATCH_URN, USER_URN, is_error, scim  # noqa: F401 - fixture

SECRET = "Secret.Person@Example.com"


async def failures(scim, admin_token: str, **params):
    from urllib.parse import urlencode
    q = ("?" + urlencode(params)) if params else ""
    url = str(scim.srv.make_url(f"/v1/{scim.tenant}/scim/failures{q}"))
    async with scim.session.get(url, headers={"Authorization": f"Bearer {admin_token}"}) as r:
        return r.status, orjson.loads(await r.read())


async def test_rejections_are_logged_without_personal_values(scim, tenant_tokens):
    admin = tenant_tokens["admin"]
    await scim.create_user(SECRET, name={"givenName": "Secret", "familyName": "Person"})
    # 409 uniqueness (the userName differs only in case)
    st, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": SECRET.lower()},
                                 headers={"X-Request-Id": "req-409"})
    assert st == 409
    # 400 invalidFilter whose text names the user
    st, body, _ = await scim.req("GET", f'/Users?filter=userName eq "{SECRET}" and')
    assert st == 400 and body["scimType"] == "invalidFilter"
    st, body, _ = await scim.req("GET", f'/Users?filter=userName eq "{SECRET}" eq')
    assert st == 400 and body["scimType"] == "invalidFilter"
    # 400 invalidValue quoting the value it rejects
    st, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": "x", "active": SECRET})
    assert st == 400 and SECRET in body["detail"]          # the client sees it; the log must not
    # 400 noTarget quoting a value path with the user's e-mail
    u = await scim.create_user("other@example.org")
    st, body, _ = await scim.patch(f"/Users/{u['id']}", {"op": "remove", "path": f'emails[value eq "{SECRET}"]'})
    assert st == 400, body
    # 401, 404 (the path names a person), 415
    st, _, _ = await scim.req("GET", "/Users", token="sl_bogus")
    assert st == 401
    st, _, _ = await scim.req("GET", f"/Users/{SECRET}")
    assert st == 404
    st, _, _ = await scim.req("POST", "/Users", raw=b"<xml/>", ctype="application/xml")
    assert st == 415
    # a success is not logged
    st, _, _ = await scim.req("GET", "/Users")
    assert st == 200

    st, out = await failures(scim, admin)
    assert st == 200, out
    rows = out["failures"]
    assert [r["status"] for r in rows] == [415, 404, 401, 400, 400, 400, 400, 409]      # newest first
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)
    r409 = rows[-1]
    assert r409["method"] == "POST" and r409["path"] == f"/scim/v2/{scim.tenant}/Users"
    assert r409["scimType"] == "uniqueness" and r409["requestId"] == "req-409"
    assert r409["detail"] == "userName is already taken"
    assert [r["scimType"] for r in rows[-3:-1]] == ["invalidFilter", "invalidFilter"]
    assert rows[-2]["method"] == "GET" and rows[-2]["path"] == f"/scim/v2/{scim.tenant}/Users"
    assert rows[-4]["scimType"] == "invalidValue" and rows[-4]["path"].endswith("/Users")
    assert rows[-5]["method"] == "PATCH" and rows[-5]["path"].endswith(u["id"])
    assert rows[2]["status"] == 401 and rows[2]["scimType"] is None and rows[2]["detail"]
    assert rows[1]["path"] == f"/scim/v2/{scim.tenant}/Users/…"
    assert all(r["time"].endswith("Z") for r in rows)
    dumped = orjson.dumps(out).decode().lower()
    for needle in ("secret", "person", "example.com", "other@"):
        assert needle not in dumped, (needle, dumped)

    # paging: limit + before
    st, page1 = await failures(scim, admin, limit=3)
    assert [r["id"] for r in page1["failures"]] == ids[:3] and page1["next"] == ids[2]
    st, page2 = await failures(scim, admin, limit=3, before=page1["next"])
    assert [r["id"] for r in page2["failures"]] == ids[3:6]
    st, bad = await failures(scim, admin, limit="x")
    assert st == 400


def srv_log(service):
    from api.failed_requests import FAILURES
    return service[0].app[FAILURES]


async def test_listing_needs_the_admin_scope_and_is_per_tenant(scim, tenant_tokens, service):
    st, _, _ = await scim.req("GET", "/Groups/nope")
    assert st == 404
    st, out = await failures(scim, tenant_tokens["scim"])
    assert st == 403
    # a SCIM token of this tenant on another tenant's SCIM URL: logged for that tenant only
    other = "t-" + uuid.uuid4().hex[:10]
    from ledger.tenancy import CreateTenant
    await service[1].bus.execute(other, CreateTenant(other, other))
    async with scim.session.get(str(scim.srv.make_url(f"/scim/v2/{other}/Users")),
                                headers={"Authorization": f"Bearer {scim.token}"}) as r:
        assert r.status == 403
    st, out = await failures(scim, tenant_tokens["admin"])
    # the 403 on the /v1 listing is not a SCIM request: not logged
    assert [r["status"] for r in out["failures"]] == [404]
    rows = await srv_log(service).list(other, 10, None)
    assert [r["status"] for r in rows] == [403]


async def test_rate_limited_and_oversize_requests_are_logged(scim, tenant_tokens, service):
    from api.ratelimit import LIMITER
    srv, _ = service
    lim = srv.app[LIMITER]
    old = (lim.rate, lim.burst)
    lim.rate, lim.burst = 0.5, 1
    try:
        statuses = [(await scim.req("GET", "/Users"))[0] for _ in range(2)]
    finally:
        lim.rate, lim.burst = old
        lim._buckets.pop(scim.tenant, None)
    assert statuses == [200, 429]
    st, body, _ = await scim.req("POST", "/Users", raw=b'{"a":"' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert st == 413
    st, out = await failures(scim, tenant_tokens["admin"])
    assert [(r["status"], r["method"]) for r in out["failures"]] == [(413, "POST"), (429, "GET")]


async def test_log_is_bounded_per_tenant_and_skips_unknown_tenants(service, tenant_tokens):
    _, rt = service
    t = tenant_tokens["tenant"]
    log = FailureLog(rt.pool, keep=3)
    for i in range(5):
        log.record(t, "POST", f"/scim/v2/{t}/Users", 409, "uniqueness", "userName is already taken", f"r{i}")
    ghost = "t-ghost-" + uuid.uuid4().hex[:6]
    log.record(ghost, "GET", f"/scim/v2/{ghost}/Users", 401, None, "invalid token", "g")
    await log.flush()
    for i in range(5, 7):
        log.record(t, "GET", f"/scim/v2/{t}/Users", 400, "invalidFilter", "x", f"r{i}")
    await log.close()
    rows = await log.list(t, 100, None)
    assert [r["requestId"] for r in rows] == ["r6", "r5", "r4"]
    assert await log.list(ghost, 100, None) == []


@pytest.mark.parametrize("text, expected", [
    ("userName is already taken", "userName is already taken"),
    ("active: expected a boolean, got 'Ada Lovelace'", "active: expected a boolean, got '…'"),
    ("unknown attribute 'nickName' for resource type User", "unknown attribute 'nickName' for resource type User"),
    ("""'emails[value eq "ada@x.com"]' matches no value""", "'…' matches no value"),
    ("expected 'EOF' but found 'jyoung' at position 12", "expected 'EOF' but found '…' at position 12"),
    ("expected ']' but found end of input", "expected ']' but found end of input"),
    ("User ada@example.com not found", "User … not found"),
    ('member "x\\"y" is odd', "member '…' is odd"),
])
def test_redaction(text, expected):
    assert redact(text) == expected


def test_safe_path():
    assert safe_path("/scim/v2/t/Users/0b6c7c4e-4a0e-4f5e-9a53-4c1f5f0e8f11") == \
        "/scim/v2/t/Users/0b6c7c4e-4a0e-4f5e-9a53-4c1f5f0e8f11"
    assert safe_path("/scim/v2/t/Users/ada@example.com") == "/scim/v2/t/Users/…"
    assert safe_path("/scim/v2/t/Groups/.search") == "/scim/v2/t/Groups/.search"
