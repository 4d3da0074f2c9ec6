"""Billing over HTTP (scope `billing`): invoices as known at a sequence, issuing them, adjustments.

    GET  /v1/{tenant}/billing?period=2026-11[&knownAt=K][&format=csv]
         the invoice document; the JSON body is exactly its canonical bytes (sha256 of the body =
         the `sha256` an issue records; also in the X-Invoice-SHA256 header)
    POST /v1/{tenant}/billing/invoices       {"period": "2026-11", "knownAt": K?, "reissue": false}
         records InvoiceIssued (201); 409 if the period was issued and reissue is not true
    GET  /v1/{tenant}/billing/invoices?period=2026-11      the issued invoices of a period
    GET  /v1/{tenant}/billing/adjustments?period=2026-11&from=K1&to=K2
         per-line differences between the invoice known at K1 and at K2, with their causing events
    POST /v1/{tenant}/billing/adjustments    {"period", "from"?, "to"?}: records the credit/debit note
         (from defaults to what was last billed: the last issued invoice's knownAt or the last
         note's `to`; to defaults to the head)

Money is minor units as strings; never floats.
"""
from __future__ import annotations

import orjson
from aiohttp import web

from ledger.billing_events import IssueInvoice, IssueNote
from ledger.executor import CommandRejected
from ledger.store import ConcurrencyError
from projections.billing import canonical_bytes, to_csv
from projections.billing_source import (UnknownTenant, adjustment_report, invoice_at, parse_period,
                                        resolve_known_at)

from .json_api import Refused, json_error, json_object, json_response

SCOPES = ("billing",)


def _int(value, field: str, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise Refused(json_error(400, f"{field} is required", field=field, code="invalidValue"))
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise Refused(json_error(400, f"{field} is a positive integer (a tenant sequence)", field=field,
                                 code="invalidValue"))
    return int(value)


def _period(value) -> str:
    try:
        parse_period(value if isinstance(value, str) else "")
    except ValueError as exc:
        raise Refused(json_error(400, str(exc), field="period", code="invalidValue")) from None
    return value


async def _body(request: web.Request, allowed: set[str]) -> dict:
    data = await json_object(request)
    for k in data:
        if k not in allowed:
            raise Refused(json_error(400, f"{k}: unknown field", field=k, code="invalidValue"))
    return data


def _rt(request):
    from .app import RUNTIME
    return request.app[RUNTIME]


async def _read(pool, fn, *args):
    """Run a read in one repeatable-read snapshot (a consistent head and events)."""
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await fn(conn, *args)


def _guard(fn):
    async def handle(request: web.Request) -> web.Response:
        try:
            return await fn(request)
        except Refused as bad:
            return bad.response
        except UnknownTenant:
            return json_error(404, "no such tenant", code="notFound")
        except ValueError as exc:          # knownAt out of range, from > to
            return json_error(400, str(exc), code="invalidValue")
        except CommandRejected as exc:
            return json_error(exc.status, exc.detail, exc.extra.get("field"), exc.code,
                              **{k: v for k, v in exc.extra.items() if k != "field"})
        except ConcurrencyError:
            return json_error(409, "concurrent change, retry", code="conflict")
    handle.scopes = SCOPES
    handle.__name__ = fn.__name__
    return handle


# ---- shared with the CLI -------------------------------------------------------------------------

async def issue_invoice(rt, tenant: str, period: str, known_at: int | None = None, *, reissue: bool = False,
                        metadata: dict | None = None, idempotency_key: str | None = None) -> dict:
    """Compute the invoice at knownAt (default: the head), then record InvoiceIssued with its hash."""
    import hashlib
    inv = await _read(rt.pool, invoice_at, tenant, period, known_at)
    digest = hashlib.sha256(canonical_bytes(inv)).hexdigest()
    cmd = IssueInvoice(period, inv.period.start, inv.period.end, inv.period.tz_name, inv.known_at,
                       {c: str(v) for c, v in inv.totals}, digest, reissue)
    return await rt.bus.execute(tenant, cmd, metadata=metadata, idempotency_key=idempotency_key)


async def issue_note(rt, tenant: str, period: str, k1: int | None, k2: int | None, *,
                     metadata: dict | None = None, idempotency_key: str | None = None) -> dict:
    import hashlib

    async def report(conn):
        to = await resolve_known_at(conn, tenant, k2)
        frm = k1
        if frm is None:
            # what the customer was last billed: the last issued invoice, or the last note since
            frm = await conn.fetchval(
                "SELECT coalesce(data->>'to_known_at', data->>'known_at')::bigint FROM events "
                "WHERE tenant_id = $1 AND stream = $2 ORDER BY seq DESC LIMIT 1", tenant, f"billing-{period}")
            if frm is None:
                raise Refused(json_error(409, f"no invoice issued for {period}: name `from`", field="from",
                                         code="notIssued"))
        return await adjustment_report(conn, tenant, period, frm, to)

    rep = await _read(rt.pool, report)
    digest = hashlib.sha256(orjson.dumps(rep, option=orjson.OPT_SORT_KEYS)).hexdigest()
    cmd = IssueNote(period, rep["from"], rep["to"], {t["currency"]: t["deltaMinor"] for t in rep["totals"]},
                    digest, len(rep["lines"]))
    res = await rt.bus.execute(tenant, cmd, metadata=metadata, idempotency_key=idempotency_key)
    return {**res, "report": rep}


def _meta(request) -> dict:
    from .app import PRINCIPAL
    return {"actor": request[PRINCIPAL].actor, "source": "billing", "request_id": request.get("request_id")}


# ---- handlers -----------------------------------------------------------------------------------

@_guard
async def get_invoice(request: web.Request) -> web.Response:
    q = request.query
    period = _period(q.get("period"))
    known_at = _int(q.get("knownAt"), "knownAt")
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        return json_error(400, "format is json or csv", field="format", code="invalidValue")
    inv = await _read(_rt(request).pool, invoice_at, request.match_info["tenant"], period, known_at)
    if fmt == "csv":
        return web.Response(body=to_csv(inv).encode(), content_type="text/csv", charset="utf-8",
                            headers={"X-Known-At": str(inv.known_at)})
    import hashlib
    body = canonical_bytes(inv)
    return web.Response(body=body, content_type="application/json",
                        headers={"X-Invoice-SHA256": hashlib.sha256(body).hexdigest(), "X-Known-At": str(inv.known_at)})


@_guard
async def post_invoice(request: web.Request) -> web.Response:
    b = await _body(request, {"period", "knownAt", "reissue"})
    period = _period(b.get("period"))
    known_at = _int(b.get("knownAt"), "knownAt")
    reissue = b.get("reissue", False)
    if not isinstance(reissue, bool):
        return json_error(400, "reissue is a boolean", field="reissue", code="invalidValue")
    res = await issue_invoice(_rt(request), request.match_info["tenant"], period, known_at, reissue=reissue,
                              metadata=_meta(request), idempotency_key=request.headers.get("Idempotency-Key"))
    return json_response(res, 201)


@_guard
async def list_invoices(request: web.Request) -> web.Response:
    period = _period(request.query.get("period"))

    async def fetch(conn):
        return await conn.fetch(
            "SELECT seq, type, data::text AS data, recorded_at FROM events WHERE tenant_id = $1 AND stream = $2 "
            "ORDER BY seq", request.match_info["tenant"], f"billing-{period}")
    rows = await _read(_rt(request).pool, fetch)
    items = [{"seq": r["seq"], "type": r["type"], "recordedAt": r["recorded_at"].isoformat(), **orjson.loads(r["data"])}
             for r in rows]
    return json_response({"period": period, "items": items})


@_guard
async def get_adjustments(request: web.Request) -> web.Response:
    q = request.query
    period = _period(q.get("period"))
    k1 = _int(q.get("from"), "from", required=True)
    k2 = _int(q.get("to"), "to")

    async def report(conn):
        to = await resolve_known_at(conn, request.match_info["tenant"], k2)
        await resolve_known_at(conn, request.match_info["tenant"], k1)
        return await adjustment_report(conn, request.match_info["tenant"], period, k1, to)
    return json_response(await _read(_rt(request).pool, report))


@_guard
async def post_adjustment(request: web.Request) -> web.Response:
    b = await _body(request, {"period", "from", "to"})
    period = _period(b.get("period"))
    res = await issue_note(_rt(request), request.match_info["tenant"], period, _int(b.get("from"), "from"),
                           _int(b.get("to"), "to"), metadata=_meta(request),
                           idempotency_key=request.headers.get("Idempotency-Key"))
    return json_response(res, 201)


def setup(app: web.Application) -> None:
    r = app.router
    base = "/v1/{tenant}/billing"
    r.add_get(base, get_invoice)
    r.add_post(base + "/invoices", post_invoice)
    r.add_get(base + "/invoices", list_invoices)
    r.add_get(base + "/adjustments", get_adjustments)
    r.add_post(base + "/adjustments", post_adjustment)


# ---- CLI: seatledger bill -----------------------------------------------------------------------

def add_cli(sub) -> dict:
    b = sub.add_parser("bill", help="a tenant's invoice for a calendar month (JSON, or CSV), optionally issued")
    b.add_argument("--tenant", required=True)
    b.add_argument("--period", required=True, metavar="YYYY-MM")
    b.add_argument("--known-at", type=int, metavar="SEQ", help="as known at this tenant sequence (default: head)")
    b.add_argument("--csv", action="store_true", help="the line items as CSV")
    b.add_argument("--issue", action="store_true", help="record InvoiceIssued for the period (at --known-at)")
    b.add_argument("--reissue", action="store_true", help="with --issue: issue again although issued")
    return {"bill": _cli_bill}


async def _cli_bill(args) -> int:
    import sys
    from .runtime import Runtime
    try:
        parse_period(args.period)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rt = await Runtime.start(pool_size=2)
    try:
        try:
            inv = await _read(rt.pool, invoice_at, args.tenant, args.period, args.known_at)
            if args.issue:
                res = await issue_invoice(rt, args.tenant, args.period, inv.known_at, reissue=args.reissue,
                                          metadata={"actor": "cli", "source": "billing"})
        except UnknownTenant:
            print(f"error: no such tenant {args.tenant}", file=sys.stderr)
            return 2
        except (ValueError, CommandRejected) as exc:
            print(f"error: {getattr(exc, 'detail', exc)}", file=sys.stderr)
            return 2
    finally:
        await rt.close()
    out = sys.stdout.buffer
    if args.csv:
        out.write(to_csv(inv).encode())
    else:
        out.write(canonical_bytes(inv) + b"\n")
    out.flush()
    if args.issue:
        print(f"issued: {orjson.dumps(res).decode()}", file=sys.stderr)
    return 0
