"""Billing end to end (issue 6): pools through the command bus, seat history on the pool streams,
invoices, issuing, adjustments and scopes over real HTTP. Amounts are computed by hand."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import orjson
from aiohttp import ClientSession

from ledger.events import NewEvent
from ledger.licence_admin import CreatePool, DefineProduct, RepricePool, ResizePool
from ledger.licences import LicenceExpired, SeatAssigned, SeatReleased, SeatResumed, SeatSuspended
from ledger.store import StreamChange
from ledger.tenancy import CreateTenant
from ledger.tokens import IssueToken

UTC = timezone.utc


def u(y, m, d, h=0):
    return datetime(y, m, d, h, tzinfo=UTC)


async def call(srv, method, path, token, json=None, raw=False):
    async with ClientSession() as s:
        async with s.request(method, str(srv.make_url(path)), json=json,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.read()
            if raw:
                return r.status, body, r.headers
            return r.status, orjson.loads(body) if body else None


async def pool(bus, tenant, pool_id="p1", seats=10, mode="usage", price=3000, over=None,
               start=u(2026, 1, 1), end=u(2027, 1, 1)):
    try:
        await bus.execute(tenant, DefineProduct("design-pro", "Design Pro"))
    except Exception:  # noqa: BLE001 - defined by an earlier pool of the test
        pass
    await bus.execute(tenant, CreatePool(pool_id, "design-pro", seats, start, end, "EUR", price, over, mode))


async def seat(store, tenant, ev, at) -> int:
    """A seat event on its pool stream with its effective instant (history imported / a correction)."""
    rec = await store.append(tenant, [StreamChange(f"pool-{ev.pool_id}", None, [NewEvent(ev, at)])])
    return rec[0].seq


def assigned(user, pool_id="p1"):
    return SeatAssigned(pool_id=pool_id, user_id=user, grants=["admin"], priority=0)


def released(user, reason="deleted", pool_id="p1"):
    return SeatReleased(pool_id=pool_id, user_id=user, reason=reason)


def lines_of(doc, pool_id="p1"):
    p = next(p for p in doc["pools"] if p["poolId"] == pool_id)
    return p["lines"]


async def test_usage_two_thirds_of_a_seat_and_reprice(service, tenant_tokens, store):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    await pool(rt.bus, t)
    await seat(store, t, assigned("a"), u(2026, 9, 11))          # start of day 11 of a 30-day month
    await seat(store, t, assigned("b"), u(2026, 8, 20))          # the whole month
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tok)
    assert st == 200, doc
    assert doc["period"] == {"start": "2026-09-01T00:00:00Z", "end": "2026-10-01T00:00:00Z", "seconds": 30 * 86400,
                             "timezone": "UTC", "label": "2026-09"}
    by_user = {x["userId"]: x for x in lines_of(doc)}
    assert by_user["a"]["amountMinor"] == "2000" and by_user["a"]["seconds"] == 20 * 86400
    assert by_user["a"]["from"] == "2026-09-11T00:00:00Z" and by_user["a"]["reason"] == "assigned"
    assert by_user["b"]["amountMinor"] == "3000"
    assert doc["totals"] == [{"currency": "EUR", "totalMinor": "5000"}]
    assert doc["pools"][0]["peakSeats"] == 2
    # a reprice on the 10th of October: 3000 for 9 days, 6000 for 22 days (31-day month)
    await rt.bus.execute(t, RepricePool("p1", 6000, effective_at=u(2026, 10, 10)))
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-10", tok)
    b = [x for x in lines_of(doc) if x["userId"] == "b"]
    assert [(x["from"], x["amountMinor"]) for x in b] == [("2026-10-01T00:00:00Z", "871"),
                                                           ("2026-10-10T00:00:00Z", "4258")]
    # 3000*9/31 = 870.97 -> 871; 6000*22/31 = 4258.06 -> 4258
    st, body, headers = await call(srv, "GET", f"/v1/{t}/billing?period=2026-10&format=csv", tok, raw=True)
    assert st == 200 and headers["Content-Type"].startswith("text/csv")
    rows = body.decode().splitlines()
    assert rows[0].startswith("pool_id,currency,kind,user_id") and len(rows) == 1 + len(lines_of(doc))


async def test_committed_downsize_and_overage(service, tenant_tokens, store):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    await pool(rt.bus, t, "big", seats=100, mode="committed", price=3000)
    await rt.bus.execute(t, ResizePool("big", 80, effective_at=u(2026, 9, 15)))
    await pool(rt.bus, t, "small", seats=2, mode="committed", price=3000, over=5000)
    for user, day in (("a", 1), ("b", 2), ("c", 5)):
        await seat(store, t, assigned(user, "small"), u(2026, 8, day))
    await seat(store, t, released("a", "admin", "small"), u(2026, 9, 16))
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tok)
    assert st == 200, doc
    big = lines_of(doc, "big")
    # 100 seats x 14/30 x 3000 = 140000; 80 x 16/30 x 3000 = 128000
    assert [(x["kind"], x["seats"], x["amountMinor"]) for x in big] == [("commitment", 100, "140000"),
                                                                        ("commitment", 80, "128000")]
    small = lines_of(doc, "small")
    # 2 contracted all month (6000); c, assigned last, is over until a leaves on the 16th: 15/30 x 5000
    assert [(x["kind"], x["userId"], x["amountMinor"]) for x in small] == [
        ("commitment", None, "6000"), ("overage", "c", "2500")]
    assert doc["totals"] == [{"currency": "EUR", "totalMinor": str(268000 + 8500)}]


async def test_suspended_is_billed_and_expiry_ends_it(service, tenant_tokens, store):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    await pool(rt.bus, t, end=u(2026, 9, 21))
    await seat(store, t, assigned("a"), u(2026, 9, 1))
    await seat(store, t, SeatSuspended(pool_id="p1", user_id="a", until=u(2026, 9, 30)), u(2026, 9, 4))
    await seat(store, t, SeatResumed(pool_id="p1", user_id="a"), u(2026, 9, 7))
    await seat(store, t, LicenceExpired(pool_id="p1", user_id="a", term_end=u(2026, 9, 21)), u(2026, 9, 21))
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tok)
    ls = lines_of(doc)
    assert [(x["rule"], x["seconds"] // 86400, x["amountMinor"]) for x in ls] == [
        ("usage.active", 3, "300"), ("usage.suspended", 3, "300"), ("usage.active", 14, "1400")]
    assert ls[-1]["reason"] == "resumed; expired"
    assert doc["totals"][0]["totalMinor"] == "2000"


async def test_dst_month_in_the_tenant_zone(service, store):
    srv, rt = service
    t = "bill-paris-" + hashlib.sha1(str(datetime.now()).encode()).hexdigest()[:6]
    await rt.bus.execute(t, CreateTenant(t, t, "Europe/Paris"))
    issue = IssueToken("billing")
    await rt.bus.execute(t, issue)
    await pool(rt.bus, t, price=7210)
    await seat(store, t, assigned("a"), u(2026, 1, 2))
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-10", issue.token)
    assert st == 200, doc
    # October 2026 in Paris: 31 days + 1 hour (summer time ends on the 25th)
    assert doc["period"]["start"] == "2026-09-30T22:00:00Z" and doc["period"]["end"] == "2026-10-31T23:00:00Z"
    assert doc["period"]["seconds"] == 31 * 86400 + 3600
    assert lines_of(doc)[0]["amountMinor"] == "7210"              # held all month: exactly one seat-period
    assert len(doc["pools"][0]["dailyHighWater"]) == 31


async def test_backdated_correction_issue_reproduce_and_adjust(service, tenant_tokens, store):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    await pool(rt.bus, t)
    await seat(store, t, assigned("keep"), u(2026, 8, 1))
    await seat(store, t, assigned("c"), u(2026, 9, 1))
    await seat(store, t, released("c", "deactivated"), u(2026, 9, 20))
    st, issued = await call(srv, "POST", f"/v1/{t}/billing/invoices", tok, {"period": "2026-09"})
    assert st == 201, issued
    k1 = issued["knownAt"]
    assert issued["totals"] == {"EUR": str(3000 + 1900)} and issued["number"] == 1
    # once per period unless explicitly re-issued
    st, body = await call(srv, "POST", f"/v1/{t}/billing/invoices", tok, {"period": "2026-09"})
    assert st == 409 and body["code"] == "alreadyIssued"

    # the correction: c actually left on the 3rd (recorded now, effective in the past)
    fix = await seat(store, t, released("c", "deactivated"), u(2026, 9, 3))
    st, now_doc = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tok)
    assert now_doc["totals"][0]["totalMinor"] == str(3000 + 200)

    # the issued invoice recomputed at its knownAt (no cache): the same bytes as sealed in the event
    st, body, headers = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09&knownAt={k1}", tok, raw=True)
    ev = [e for e in await store.read_stream(t, "billing-2026-09") if e.type == "InvoiceIssued"][0]
    assert ev.data["known_at"] == k1 and ev.data["totals"] == {"EUR": "4900"}
    assert hashlib.sha256(body).hexdigest() == ev.data["sha256"] == headers["X-Invoice-SHA256"]

    # the adjustment: a credit on c's line, explained by the correction
    st, rep = await call(srv, "GET", f"/v1/{t}/billing/adjustments?period=2026-09&from={k1}&to={fix}", tok)
    assert st == 200, rep
    assert [(x["kind"], x["userId"], x["beforeMinor"], x["afterMinor"], x["deltaMinor"]) for x in rep["lines"]] == [
        ("usage", "c", "1900", "200", "-1700")]
    assert rep["lines"][0]["causes"] == [{"seq": fix, "type": "SeatReleased", "effectiveAt": "2026-09-03T00:00:00Z",
                                          "userId": "c"}]
    assert rep["totals"] == [{"currency": "EUR", "deltaMinor": "-1700"}]
    st, note = await call(srv, "POST", f"/v1/{t}/billing/adjustments", tok, {"period": "2026-09"})
    assert st == 201, note
    assert note["credit"] == {"EUR": "1700"} and note["debit"] == {} and note["from"] == k1
    evs = {e.type: e for e in await store.read_stream(t, "billing-2026-09")}
    assert evs["CreditNoteIssued"].data["amounts"] == {"EUR": "1700"}
    st, body = await call(srv, "POST", f"/v1/{t}/billing/adjustments", tok, {"period": "2026-09"})
    assert st == 409 and body["code"] == "nothingToAdjust"          # from = the note's `to` now
    st, body = await call(srv, "POST", f"/v1/{t}/billing/adjustments", tok, {"period": "2026-09", "from": k1, "to": fix})
    assert st == 409 and body["code"] == "alreadyIssued"

    # explicit re-issue at the head
    st, again = await call(srv, "POST", f"/v1/{t}/billing/invoices", tok, {"period": "2026-09", "reissue": True})
    assert st == 201 and again["number"] == 2 and again["totals"] == {"EUR": "3200"}
    st, listed = await call(srv, "GET", f"/v1/{t}/billing/invoices?period=2026-09", tok)
    assert [x["type"] for x in listed["items"]] == ["InvoiceIssued", "CreditNoteIssued", "InvoiceIssued"]


async def test_commands_only_assignment_bills_from_its_recorded_instant(service, tenant_tokens, pg_pool, store):
    """The normal path: seats assigned by commands are effective when recorded."""
    from test_licence_admin import add_users

    from ledger.licence_admin import AdminAssign
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    await add_users(pg_pool, t, {"a": {}})
    await pool(rt.bus, t, start=u(2026, 1, 1), end=u(2028, 1, 1))
    await rt.bus.execute(t, AdminAssign("p1", "a"))
    at = [e for e in await store.read_stream(t, "pool-p1") if e.type == "SeatAssigned"][0].effective_at
    period = f"{at.year:04d}-{at.month:02d}"
    st, doc = await call(srv, "GET", f"/v1/{t}/billing?period={period}", tok)
    (line,) = lines_of(doc)
    assert line["userId"] == "a" and line["from"] == at.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_validation_and_scopes(service, tenant_tokens):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["billing"]
    assert (await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tenant_tokens["admin"]))[0] == 403
    assert (await call(srv, "GET", f"/v1/{t}/billing?period=2026-09", tenant_tokens["auditor"]))[0] == 403
    assert (await call(srv, "POST", f"/v1/{t}/billing/invoices", tenant_tokens["admin"], {"period": "2026-09"}))[0] == 403
    other = "bill-other-" + hashlib.sha1(str(datetime.now()).encode()).hexdigest()[:6]
    await rt.bus.execute(other, CreateTenant(other, other))
    assert (await call(srv, "GET", f"/v1/{other}/billing?period=2026-09", tok))[0] == 403
    assert (await call(srv, "GET", f"/v1/{other}/billing/adjustments?period=2026-09&from=1", tok))[0] == 403
    for q, field in (("period=2026-13", "period"), ("period=nov", "period"), ("", "period"),
                     ("period=2026-09&knownAt=x", "knownAt"), ("period=2026-09&format=pdf", "format")):
        st, body = await call(srv, "GET", f"/v1/{t}/billing?{q}", tok)
        assert st == 400 and body["field"] == field, (q, body)
    st, body = await call(srv, "GET", f"/v1/{t}/billing?period=2026-09&knownAt=999999", tok)
    assert st == 400
    st, body = await call(srv, "POST", f"/v1/{t}/billing/invoices", tok, {"period": "2026-09", "colour": 1})
    assert st == 400 and body["field"] == "colour"
    st, body = await call(srv, "POST", f"/v1/{t}/billing/adjustments", tok, {"period": "2026-09"})
    assert st == 409 and body["code"] == "notIssued"
