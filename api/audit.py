"""The audit trail over HTTP: event queries, streamed exports, signed heads, the public key.

    GET /v1/<tenant>/audit/events   filter + cursor pagination           (scope auditor or admin)
    GET /v1/<tenant>/audit/export   JSONL or CSV, streamed                (scope auditor or admin)
    GET /v1/<tenant>/audit/head     latest seq + hash, Ed25519-signed     (scope auditor or admin)
    GET /v1/audit/public-key        the signing key (PEM + key_id)         (no authentication)

Data is returned as stored: personal fields stay sealed in the `_pii` envelope, never decrypted here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiohttp import web

from ledger.signing import Signer

from . import audit_export
from .app import RUNTIME, scopes
from .json_api import json_error, json_response

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_FILTERS = ("stream", "type", "actor", "source")
_EVENT_PARAMS = frozenset(_FILTERS + ("from", "to", "time", "limit", "cursor"))
_EXPORT_PARAMS = frozenset(("format", "from_seq", "to_seq"))
_TIME_COLUMNS = {"recorded": "recorded_at", "effective": "effective_at"}


@dataclass
class _State:
    signer: Signer | None = None


STATE = web.AppKey("audit_state", _State)


class BadParam(Exception):
    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.name, self.detail = name, detail


def _bad(exc: BadParam) -> web.Response:
    return json_error(400, f"invalid parameter {exc.name}: {exc.detail}", field=exc.name)


def _params(request: web.Request, allowed: frozenset) -> dict[str, str]:
    q = request.rel_url.query
    out = {}
    for k in q.keys():
        if k not in allowed:
            raise BadParam(k, f"unknown parameter (allowed: {', '.join(sorted(allowed))})")
        vals = q.getall(k)
        if len(vals) > 1:
            raise BadParam(k, "given more than once")
        out[k] = vals[0]
    return out


def _int(p: dict, name: str, default: int | None, lo: int, hi: int = 2 ** 63 - 1) -> int | None:
    if name not in p:
        return default
    s = p[name]
    if not s.isascii() or not s.isdigit():
        raise BadParam(name, "must be a non-negative integer")
    v = int(s)
    if not lo <= v <= hi:
        raise BadParam(name, f"must be between {lo} and {hi}")
    return v


def _time(p: dict, name: str) -> datetime | None:
    if name not in p:
        return None
    try:
        t = datetime.fromisoformat(p[name])
    except ValueError:
        raise BadParam(name, "must be an ISO 8601 date-time with a timezone, e.g. 2024-05-01T09:00:00Z") from None
    if t.tzinfo is None:
        raise BadParam(name, "needs a timezone (e.g. Z or +02:00)")
    return t


# ---- cursors: opaque, stable (keyset on seq), bound to the filters they were issued for ----------
def _fingerprint(filters: dict) -> str:
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def _encode_cursor(after_seq: int, fp: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([1, after_seq, fp])).decode("ascii").rstrip("=")


def _decode_cursor(s: str, fp: str) -> int:
    try:
        v, after, got = orjson.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        if v != 1 or not isinstance(after, int) or after < 0 or not isinstance(got, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadParam("cursor", "not a cursor this service issued") from None
    if got != fp:
        raise BadParam("cursor", "was issued for different filters")
    return after


def build_query(tenant: str, p: dict) -> tuple[str, list, int, str]:
    """(sql, args, limit, fingerprint) for /audit/events. Values only ever travel as parameters."""
    time_kind = p.get("time", "recorded")
    if time_kind not in _TIME_COLUMNS:
        raise BadParam("time", "must be recorded or effective")
    t_from, t_to = _time(p, "from"), _time(p, "to")
    if t_from and t_to and t_to <= t_from:
        raise BadParam("to", "must be after from")
    limit = _int(p, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    for k in _FILTERS:
        if k in p and (p[k] == "" or len(p[k]) > 512):
            raise BadParam(k, "must be 1 to 512 characters")
    filters = {k: p.get(k) for k in _FILTERS}
    filters.update(time=time_kind, frm=t_from.isoformat() if t_from else None,
                   to=t_to.isoformat() if t_to else None)
    fp = _fingerprint(filters)
    after = _decode_cursor(p["cursor"], fp) if "cursor" in p else 0
    args: list = [tenant, after]
    conds = ["tenant_id = $1", "seq > $2"]

    def add(cond: str, value) -> None:
        args.append(value)
        conds.append(cond.format(f"${len(args)}"))

    if "stream" in p:
        add("stream = {}", p["stream"])
    if "type" in p:
        add("type = {}", p["type"])
    if "actor" in p:
        add("metadata->>'actor' = {}", p["actor"])
    if "source" in p:
        add("metadata->>'source' = {}", p["source"])
    col = _TIME_COLUMNS[time_kind]
    if t_from:
        add(col + " >= {}", t_from)
    if t_to:
        add(col + " < {}", t_to)
    args.append(limit + 1)
    sql = ("SELECT seq, stream, stream_version, type, schema_version, effective_at, recorded_at, "
           "idempotency_key, data::text AS data, metadata::text AS metadata, prev_hash, hash "
           f"FROM events WHERE {' AND '.join(conds)} ORDER BY seq LIMIT ${len(args)}")
    return sql, args, limit, fp


def _event_json(r) -> dict:
    return {"seq": r["seq"], "stream": r["stream"], "stream_version": r["stream_version"], "type": r["type"],
            "schema_version": r["schema_version"], "effective_at": r["effective_at"].isoformat(),
            "recorded_at": r["recorded_at"].isoformat(), "idempotency_key": r["idempotency_key"],
            "data": orjson.Fragment(r["data"]), "metadata": orjson.Fragment(r["metadata"]),
            "prev_hash": bytes(r["prev_hash"]).hex(), "hash": bytes(r["hash"]).hex()}


@scopes("auditor", "admin")
async def query_events(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    try:
        sql, args, limit, fp = build_query(tenant, _params(request, _EVENT_PARAMS))
    except BadParam as exc:
        return _bad(exc)
    async with request.app[RUNTIME].pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    body = {"tenant": tenant, "events": [_event_json(r) for r in rows],
            "next_cursor": _encode_cursor(rows[-1]["seq"], fp) if more else None}
    return json_response(body)


@scopes("auditor", "admin")
async def export(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    try:
        p = _params(request, _EXPORT_PARAMS)
        fmt = p.get("format", "jsonl")
        if fmt not in audit_export.FORMATS:
            raise BadParam("format", "must be jsonl or csv")
        from_seq = _int(p, "from_seq", 1, 1)
        to_seq = _int(p, "to_seq", None, 1)
        if to_seq is not None and to_seq < from_seq:
            raise BadParam("to_seq", "must not be below from_seq")
    except BadParam as exc:
        return _bad(exc)
    async with request.app[RUNTIME].pool.acquire() as conn:
        async with audit_export.snapshot(conn):
            head = await audit_export.head_seq(conn, tenant) or 0
            last = head if to_seq is None else min(to_seq, head)
            resp = web.StreamResponse(headers={
                "Content-Type": audit_export.CONTENT_TYPES[fmt],
                "Content-Disposition": f'attachment; filename="{tenant}-{from_seq}-{last}.{fmt}"',
                "X-Seatledger-Head-Seq": str(head), "Cache-Control": "no-store"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                async for chunk in audit_export.export_chunks(conn, tenant, fmt, from_seq, to_seq):
                    await resp.write(chunk)
            except ConnectionError:
                raise
            except Exception:  # noqa: BLE001 - headers are sent: cut the stream so the client sees it is incomplete
                log.exception("export of tenant %s failed mid-stream (request %s)", tenant, request.get("request_id"))
                if request.transport is not None:
                    request.transport.abort()
                return resp
    await resp.write_eof()
    return resp


def _signer(app: web.Application) -> Signer:
    st = app[STATE]
    if st.signer is None:
        st.signer = Signer.load()
    return st.signer


@scopes("auditor", "admin")
async def signed_head(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    seq, h = await request.app[RUNTIME].store.head(tenant)
    return web.json_response(_signer(request.app).sign_head(tenant, seq, h.hex()).as_dict())


async def public_key(request: web.Request) -> web.Response:
    s = _signer(request.app)
    if request.rel_url.query.get("format") == "pem":
        return web.Response(text=s.public_pem(), content_type="application/x-pem-file")
    return web.json_response({"algorithm": "Ed25519", "key_id": s.key_id, "public_key_pem": s.public_pem()})


async def _load_key(app: web.Application) -> None:
    _signer(app)     # fail at start, not at the first request, if SEATLEDGER_SIGNING_KEY is wrong


def setup(app: web.Application) -> None:
    app[STATE] = _State()
    app.on_startup.append(_load_key)
    app.router.add_get("/v1/audit/public-key", public_key)
    app.router.add_get("/v1/{tenant}/audit/events", query_events)
    app.router.add_get("/v1/{tenant}/audit/export", export)
    app.router.add_get("/v1/{tenant}/audit/head", signed_head)
