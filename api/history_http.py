"""Point-in-time history over HTTP (scope auditor or admin). Every query takes `asOf` (an ISO time,
default now) and optionally `knownAt` (a tenant sequence number or an ISO recorded time: what the
ledger said then). Answers come from the temporal projection, caught up to the head first;
`engine=replay` answers the licence questions by folding the raw events instead (slow, independent).

    GET /v1/<t>/history/pools/<pool>/holders[?limit&cursor]     held seats at asOf, with `total`
    GET /v1/<t>/history/products/<product>/holders[?limit&cursor]
    GET /v1/<t>/history/pools/<pool>/holders/export             every holder, JSON Lines, streamed
    GET /v1/<t>/history/products/<product>/holders/export
    GET /v1/<t>/history/users/<user>/licences                   the user's seats (held or waiting)
    GET /v1/<t>/history/usage                                   per pool: seats, used, waiting
    GET /v1/<t>/history/users/<user>/timeline                   intervals: from, to, why, by which seq
    GET /v1/<t>/history/pools/<pool>/timeline[?limit&cursor]
    GET /v1/<t>/history/users/<user>                            the SCIM User as it was (deleted: 404
    GET /v1/<t>/history/groups/<group>                          with deleted_at; erased: "erased": true)

The same resources in SCIM form are `GET /scim/v2/<t>/Users|Groups/<id>?asOf=T[&knownAt=K]` (same scopes,
api/scim_http.py), folded by the same `ledger.replay.resource_at`. The answers are functions of
(pool, tenant, asOf, knownAt) shared by the handlers and the CLI: `seatledger holders`, `licences`,
`usage`, `resource`, `timeline` print the JSON the endpoints return.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

import orjson
from aiohttp import web

from ledger import replay
from projections import temporal as tp

from .app import RUNTIME
from .json_api import json_error, json_response

SCOPES = ("auditor", "admin")
MAX_LIMIT = 1000


class BadParam(Exception):
    def __init__(self, name: str, detail: str):
        super().__init__(detail)
        self.name, self.detail = name, detail


def parse_time(name: str, s: str) -> datetime:
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise BadParam(name, "must be an ISO 8601 date-time with a timezone, e.g. 2024-05-01T09:00:00Z") from None
    if t.tzinfo is None:
        raise BadParam(name, "needs a timezone (e.g. Z or +02:00)")
    return t


def parse_known(s: str | None) -> int | datetime | None:
    """knownAt: a tenant sequence number (digits) or an ISO recorded time."""
    if s is None:
        return None
    if s.isascii() and s.isdigit():
        return int(s)
    return parse_time("knownAt", s)


def when_params(request: web.Request) -> tuple[datetime, int | datetime | None]:
    """(asOf, knownAt) of a request (also read by the SCIM GET ?asOf, api/scim_http.py); BadParam if bad."""
    q = request.rel_url.query
    as_of = parse_time("asOf", q["asOf"]) if "asOf" in q else datetime.now(timezone.utc)
    return as_of, parse_known(q.get("knownAt"))


def _limit(request: web.Request, default: int = 100) -> int:
    s = request.rel_url.query.get("limit")
    if s is None:
        return default
    if not (s.isascii() and s.isdigit()) or not 1 <= int(s) <= MAX_LIMIT:
        raise BadParam("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(s)


def _cursor_out(*parts) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def _cursor_in(request: web.Request, n: int) -> list | None:
    s = request.rel_url.query.get("cursor")
    if s is None:
        return None
    try:
        v = orjson.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, str) for x in v):
            raise ValueError
        return v
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise BadParam("cursor", "not a cursor this service issued") from None


def handler(fn):
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except BadParam as exc:
            return json_error(400, f"invalid parameter {exc.name}: {exc.detail}", field=exc.name)
    wrapped.scopes = SCOPES
    return wrapped


async def known_seq(pool, tenant: str, known) -> tuple[int, int]:
    """(head the projection reflects, knownAt as a sequence), the projection caught up first."""
    head = await tp.ensure_current(pool, tenant)
    async with pool.acquire() as conn:
        return head, await tp.resolve_known(conn, tenant, known, head)


async def _known_seq(request, known) -> tuple[int, int]:
    return await known_seq(request.app[RUNTIME].pool, request.match_info["tenant"], known)


def _meta(tenant, as_of, known, k) -> dict:
    return {"tenant": tenant, "asOf": as_of.isoformat(),
            "knownAt": {"given": None if known is None else (known if isinstance(known, int) else known.isoformat()),
                        "seq": k}}


def _engine(request) -> str:
    e = request.rel_url.query.get("engine", "projection")
    if e not in ("projection", "replay"):
        raise BadParam("engine", "projection or replay")
    return e


async def _pool_ids(conn, tenant, request, k) -> list[str]:
    if "pool" in request.match_info:
        return [request.match_info["pool"]]
    return await tp.pools_of_product(conn, tenant, request.match_info["product"], k)


@handler
async def holders(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    as_of, known = when_params(request)
    limit = _limit(request)
    cur = _cursor_in(request, 2)
    head, k = await _known_seq(request, known)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        if _engine(request) == "replay":
            rp = await replay.licence_replay(conn, tenant, known)
            rows = rp.holders(as_of, [request.match_info["pool"]] if "pool" in request.match_info else None,
                              request.match_info.get("product"))
            total = len(rows)
            rows = [r for r in rows if cur is None or (r["user_id"], r["pool_id"]) > tuple(cur)][:limit]
        else:
            pools = await _pool_ids(conn, tenant, request, k)
            total, rows = await tp.holders(conn, tenant, pools, as_of, k, limit, tuple(cur) if cur else ("", ""))
    body = {**_meta(tenant, as_of, known, k), "total": total, "holders": rows, "next_cursor": None}
    if len(rows) == limit:
        body["next_cursor"] = _cursor_out(rows[-1]["user_id"], rows[-1]["pool_id"])
    return json_response(body)


@handler
async def export_holders(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    as_of, known = when_params(request)
    head, k = await _known_seq(request, known)
    rt = request.app[RUNTIME]
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    async with rt.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            pools = await _pool_ids(conn, tenant, request, k)
            buf = []
            async for r in tp.export_holders(conn, tenant, pools, as_of, k):
                buf.append(orjson.dumps(r) + b"\n")
                if len(buf) >= 1000:
                    await resp.write(b"".join(buf))
                    buf = []
            if buf:
                await resp.write(b"".join(buf))
    await resp.write_eof()
    return resp


# ---- the answers, shared by the HTTP handlers and the CLI ---------------------------------------------

async def licences_at(pool, tenant: str, user: str, as_of: datetime, known, engine: str = "projection") -> dict:
    """A user's seats (held or waiting) at as_of, as known at `known`."""
    head, k = await known_seq(pool, tenant, known)
    async with pool.acquire() as conn:
        if engine == "replay":
            rows = (await replay.licence_replay(conn, tenant, known)).licences(user, as_of)
        else:
            rows = await tp.licences(conn, tenant, user, as_of, k)
    return {**_meta(tenant, as_of, known, k), "user_id": user, "licences": rows}


async def usage_at(pool, tenant: str, as_of: datetime, known, engine: str = "projection") -> dict:
    """Per pool: seats, used (active + suspended), waiting at as_of, as known at `known`."""
    head, k = await known_seq(pool, tenant, known)
    async with pool.acquire() as conn:
        if engine == "replay":
            rows = (await replay.licence_replay(conn, tenant, known)).usage(as_of)
        else:
            rows = await tp.usage(conn, tenant, as_of, k)
    return {**_meta(tenant, as_of, known, k), "pools": rows}


async def user_timeline_of(pool, tenant: str, user: str, known) -> dict:
    """Every interval of a user's seats over all effective time, as known at `known`."""
    head, k = await known_seq(pool, tenant, known)
    async with pool.acquire() as conn:
        rows = await tp.user_timeline(conn, tenant, user, k)
    return {"tenant": tenant, "knownAt": {"seq": k}, "user_id": user, "intervals": rows}


async def pool_timeline_page(pool, tenant: str, pool_id: str, known, limit: int,
                             after: tuple[str, datetime] | None = None) -> dict:
    """One page of a pool's intervals ordered by (user, from); `next_cursor` is (user, from) of the last
    row when the page is full."""
    head, k = await known_seq(pool, tenant, known)
    async with pool.acquire() as conn:
        rows = await tp.pool_timeline(conn, tenant, pool_id, k, limit, after)
    nxt = (rows[-1]["user_id"], rows[-1]["from"]) if len(rows) == limit else None
    return {"tenant": tenant, "knownAt": {"seq": k}, "pool_id": pool_id, "intervals": rows, "next_cursor": nxt}


def absent_detail(kind: str, rid: str, res: replay.AsOf, as_of: datetime, known) -> str:
    """Why a resource asked for as of a time is not there (the SCIM 404's detail, the /v1 404's error)."""
    when = as_of.isoformat() + ("" if known is None else
                                f" as known at {known if isinstance(known, int) else known.isoformat()}")
    if res.status == "deleted":
        return f"{kind} {rid} was deleted at {res.deleted_at.isoformat()}, before {when}"
    return f"no {kind} {rid} existed at {when}"


# ---- HTTP -------------------------------------------------------------------------------------------

@handler
async def user_licences(request: web.Request) -> web.Response:
    as_of, known = when_params(request)
    return json_response(await licences_at(request.app[RUNTIME].pool, request.match_info["tenant"],
                                           request.match_info["user"], as_of, known, _engine(request)))


@handler
async def usage(request: web.Request) -> web.Response:
    as_of, known = when_params(request)
    return json_response(await usage_at(request.app[RUNTIME].pool, request.match_info["tenant"], as_of, known,
                                        _engine(request)))


@handler
async def user_timeline(request: web.Request) -> web.Response:
    _, known = when_params(request)
    return json_response(await user_timeline_of(request.app[RUNTIME].pool, request.match_info["tenant"],
                                                request.match_info["user"], known))


@handler
async def pool_timeline(request: web.Request) -> web.Response:
    _, known = when_params(request)
    limit = _limit(request, MAX_LIMIT)
    cur = _cursor_in(request, 2)
    after = (cur[0], parse_time("cursor", cur[1])) if cur else None
    body = await pool_timeline_page(request.app[RUNTIME].pool, request.match_info["tenant"],
                                    request.match_info["pool"], known, limit, after)
    if body["next_cursor"]:
        body["next_cursor"] = _cursor_out(*body["next_cursor"])
    return json_response(body)


def resource_body(kind: str, rid: str, res: replay.AsOf, as_of: datetime, known) -> dict:
    """The /v1 (and CLI) answer for a resource as it was: its document, or why it was not there."""
    if res.status == "ok":
        return {**res.doc, "asOf": as_of.isoformat()}
    body = {"error": absent_detail(kind, rid, res, as_of, known), "status": 404}
    if res.status == "deleted":
        body["deleted_at"] = res.deleted_at.isoformat()
    return body


async def _resource(request: web.Request, kind: str) -> web.Response:
    tenant, rid = request.match_info["tenant"], request.match_info["id"]
    as_of, known = when_params(request)
    res = await replay.resource_at(request.app[RUNTIME].store, tenant, kind, rid, as_of, known)
    return json_response(resource_body(kind, rid, res, as_of, known), 200 if res.status == "ok" else 404)


@handler
async def user_as_of(request: web.Request) -> web.Response:
    return await _resource(request, "User")


@handler
async def group_as_of(request: web.Request) -> web.Response:
    return await _resource(request, "Group")


def setup(app: web.Application) -> None:
    r = app.router
    b = "/v1/{tenant}/history"
    r.add_get(b + "/pools/{pool}/holders", holders)
    r.add_get(b + "/products/{product}/holders", holders)
    r.add_get(b + "/pools/{pool}/holders/export", export_holders)
    r.add_get(b + "/products/{product}/holders/export", export_holders)
    r.add_get(b + "/users/{user}/licences", user_licences)
    r.add_get(b + "/usage", usage)
    r.add_get(b + "/users/{user}/timeline", user_timeline)
    r.add_get(b + "/pools/{pool}/timeline", pool_timeline)
    r.add_get(b + "/users/{id}", user_as_of)
    r.add_get(b + "/groups/{id}", group_as_of)


# ---- CLI: rebuild, holders, licences, usage, resource, timeline (registered by api/cli.py) ------------

def _when(p, as_of: bool = True) -> None:
    p.add_argument("--tenant", required=True)
    if as_of:
        p.add_argument("--as-of", help="ISO time with a timezone (default: now)")
    p.add_argument("--known-at", help="a tenant sequence number or an ISO recorded time (default: the head)")


def add_cli(sub) -> dict:
    rb = sub.add_parser("rebuild", help="rebuild the projections from the events, compare, swap")
    rb.add_argument("--tenant")
    rb.add_argument("--check", action="store_true", help="report the differences without swapping")
    rb.add_argument("--json", action="store_true")
    h = sub.add_parser("holders", help="who held a pool (or product) at an instant, as known then")
    h.add_argument("--tenant", required=True)
    g = h.add_mutually_exclusive_group(required=True)
    g.add_argument("--pool")
    g.add_argument("--product")
    h.add_argument("--as-of", required=True, help="ISO time")
    h.add_argument("--known-at", help="a tenant sequence number or an ISO recorded time")
    h.add_argument("--engine", choices=["projection", "replay"], default="projection")
    lc = sub.add_parser("licences", help="a user's seats (held or waiting) at an instant, as known then")
    _when(lc)
    lc.add_argument("--user", required=True, help="the user's SCIM id")
    lc.add_argument("--engine", choices=["projection", "replay"], default="projection")
    us = sub.add_parser("usage", help="seats, used and waiting per pool at an instant, as known then")
    _when(us)
    us.add_argument("--engine", choices=["projection", "replay"], default="projection")
    rs = sub.add_parser("resource", help="a SCIM user or group as it was at an instant (exit 1: not there then)")
    _when(rs)
    g = rs.add_mutually_exclusive_group(required=True)
    g.add_argument("--user", metavar="ID")
    g.add_argument("--group", metavar="ID")
    # a timeline spans all effective time, so it has no --as-of; --known-at picks the belief
    tl = sub.add_parser("timeline", help="a user's or a pool's seat intervals (from, to, why, by which event)")
    _when(tl, as_of=False)
    g = tl.add_mutually_exclusive_group(required=True)
    g.add_argument("--user")
    g.add_argument("--pool")
    return {"rebuild": cli_rebuild, "holders": cli_holders, "licences": cli_licences, "usage": cli_usage,
            "resource": cli_resource, "timeline": cli_timeline}


async def cli_rebuild(args) -> int:
    import sys
    from rich.console import Console
    from projections.rebuild import rebuild_tenant, tenants
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=4)
    console = Console(stderr=True)
    out, bad = [], 0
    try:
        for t in [args.tenant] if args.tenant else await tenants(rt.pool):
            rep = await rebuild_tenant(rt.pool, t, check=args.check, progress=True, console=console,
                                       owner=rt.dsns.migrate)
            out.append(rep)
            bad += not rep.ok
            if not args.json:
                print(f"tenant {t}: {rep.events} events through sequence {rep.head} in {rep.seconds:.2f}s "
                      f"({rep.events_per_s:,.0f} events/s)")
                for tr in rep.tables:
                    state = "same" if tr.ok else ("REPAIRED" if rep.swapped else "DIFFERS")
                    print(f"  {tr.table:24} {state:9} live {tr.live_rows} rows {tr.live_digest}  "
                          f"rebuilt {tr.rebuilt_rows} rows {tr.rebuilt_digest}")
                    for d in tr.differences:
                        print("    " + orjson.dumps(d, default=str).decode())
                    if tr.more:
                        print(f"    ... and {tr.more} more")
    finally:
        await rt.close()
    if args.json:
        sys.stdout.write(orjson.dumps([{"tenant": r.tenant, "events": r.events, "head": r.head, "ok": r.ok,
                                        "swapped": r.swapped, "seconds": r.seconds,
                                        "tables": [t.__dict__ for t in r.tables]} for r in out],
                                      default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
    # --check: exit 1 when a projection differs from the events; rebuild: 0 once repaired
    return 1 if (bad and args.check) else 0


async def cli_holders(args) -> int:
    async def ask(rt, as_of, known):
        head, k = await known_seq(rt.pool, args.tenant, known)
        async with rt.pool.acquire() as conn:
            if args.engine == "replay":
                rows = (await replay.licence_replay(conn, args.tenant, known)).holders(
                    as_of, [args.pool] if args.pool else None, args.product)
            else:
                pools = [args.pool] if args.pool else await tp.pools_of_product(conn, args.tenant, args.product, k)
                rows = [r async for r in tp.export_holders(conn, args.tenant, pools, as_of, k)]
        return 0, {**_meta(args.tenant, as_of, known, k), "total": len(rows), "holders": rows}
    return await _cli_answer(args, ask)


def _load_event_types() -> None:
    """The CLI decodes events whose types the service's modules register on import (the HTTP app
    imports them all): rules on pool streams, the directory's on user and group streams."""
    import ledger.directory  # noqa: F401
    import ledger.licence_rules  # noqa: F401


def _cli_when(args) -> tuple[datetime, int | datetime | None]:
    """(asOf, knownAt) from the command line; a bad value exits 2 with argparse's kind of message."""
    import sys
    try:
        as_of = parse_time("--as-of", args.as_of) if getattr(args, "as_of", None) else datetime.now(timezone.utc)
        return as_of, parse_known(args.known_at)
    except BadParam as exc:
        print(f"error: {'--known-at' if exc.name == 'knownAt' else exc.name}: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None


async def _cli_answer(args, ask) -> int:
    """Runs `ask(runtime, asOf, knownAt)` -> (exit code, JSON body) and prints the body."""
    from .runtime import Runtime
    as_of, known = _cli_when(args)
    _load_event_types()
    rt = await Runtime.start(pool_size=2)
    try:
        code, body = await ask(rt, as_of, known)
    finally:
        await rt.close()
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return code


async def cli_licences(args) -> int:
    async def ask(rt, as_of, known):
        return 0, await licences_at(rt.pool, args.tenant, args.user, as_of, known, args.engine)
    return await _cli_answer(args, ask)


async def cli_usage(args) -> int:
    async def ask(rt, as_of, known):
        return 0, await usage_at(rt.pool, args.tenant, as_of, known, args.engine)
    return await _cli_answer(args, ask)


async def cli_timeline(args) -> int:
    async def ask(rt, as_of, known):
        if args.user:
            return 0, await user_timeline_of(rt.pool, args.tenant, args.user, known)
        body, after = None, None
        while True:   # every page: the CLI prints the whole timeline
            page = await pool_timeline_page(rt.pool, args.tenant, args.pool, known, MAX_LIMIT, after)
            if body is None:
                body = page
            else:
                body["intervals"] += page["intervals"]
            if page["next_cursor"] is None:
                break
            after = (page["next_cursor"][0], datetime.fromisoformat(page["next_cursor"][1]))
        del body["next_cursor"]
        return 0, body
    return await _cli_answer(args, ask)


async def cli_resource(args) -> int:
    """Exit 0 with the document; 1 with the reason when the resource was not there at --as-of."""
    kind, rid = ("User", args.user) if args.user else ("Group", args.group)

    async def ask(rt, as_of, known):
        res = await replay.resource_at(rt.store, args.tenant, kind, rid, as_of, known)
        return (0 if res.status == "ok" else 1), resource_body(kind, rid, res, as_of, known)
    return await _cli_answer(args, ask)
