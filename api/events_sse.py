"""Server-sent events of licence changes: `GET /v1/<tenant>/events/licences`.

Each ledger seat event (assigned, queued, suspended, resumed, released, expired, corrections) is
sent with `id` = its tenant sequence, so a client resumes with `Last-Event-ID` (or `?after=SEQ`) and
misses nothing. Wake-ups come from the ledger's NOTIFY (one LISTEN connection per process), so an
application can end a session within moments of a revocation. Term ends are timer-driven: at the
exact instant a pool's term ends, a `TermEnded` event (no id: it is not a ledger fact yet) names the
pool and its holders, before the scheduler has recorded the LicenceExpired events.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from ledger.subscription import Wakeups

from .json_api import json_error

log = logging.getLogger(__name__)
SEAT_TYPES = ["SeatAssigned", "SeatQueued", "SeatGrantsChanged", "SeatSuspended", "SeatResumed", "SeatReleased",
              "SeatDequeued", "LicenceExpired", "SeatEndCorrected", "SeatStartCorrected"]


# the process's LISTEN connection (ledger.subscription.Wakeups: per-tenant waiters)
NOTIFIER = web.AppKey("licence_notifier", Wakeups)


async def _next_term_end(conn, tenant: str, now: datetime):
    from projections.licences import terms_from_json
    best = None
    for r in await conn.fetch("SELECT pool_id, terms FROM licence_pools WHERE tenant_id = $1 AND held > 0", tenant):
        end = terms_from_json(r["terms"]).term_end_at(now)
        if end > now and (best is None or end < best[0]):
            best = (end, r["pool_id"])
    return best


async def licence_events(request: web.Request) -> web.StreamResponse:
    from .app import RUNTIME
    rt = request.app[RUNTIME]
    tenant = request.match_info["tenant"]
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    try:
        after = int(raw) if raw is not None else None
    except ValueError:
        return json_error(400, "Last-Event-ID / after is a sequence number", field="after")
    notifier = request.app[NOTIFIER]
    wake = notifier.subscribe(tenant)
    try:
        async with rt.pool.acquire() as conn:
            if after is None:
                after = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
        async with sse_response(request, ping_interval=15) as resp:
            while resp.is_connected():
                wake.clear()
                async with rt.pool.acquire() as conn:
                    rows = await conn.fetch(
                        "SELECT seq, type, data::text AS data, effective_at, recorded_at FROM events "
                        "WHERE tenant_id = $1 AND seq > $2 AND type = ANY($3::text[]) ORDER BY seq LIMIT 500",
                        tenant, after, SEAT_TYPES)
                    now = datetime.now(timezone.utc)
                    nxt = None if rows else await _next_term_end(conn, tenant, now)
                for r in rows:
                    data = orjson.loads(r["data"])
                    data.update(seq=r["seq"], effective_at=r["effective_at"].isoformat(),
                                recorded_at=r["recorded_at"].isoformat())
                    await resp.send(orjson.dumps(data).decode(), id=str(r["seq"]), event=r["type"])
                    after = r["seq"]
                if rows:
                    continue
                timeout = 15.0
                if nxt is not None:
                    timeout = min(timeout, max(0.0, (nxt[0] - now).total_seconds()))
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except asyncio.TimeoutError:
                    if nxt is not None and datetime.now(timezone.utc) >= nxt[0]:
                        async with rt.pool.acquire() as conn:
                            holders = [x["user_id"] for x in await conn.fetch(
                                "SELECT user_id FROM licence_seats WHERE tenant_id = $1 AND pool_id = $2 "
                                "AND state <> 'waiting' ORDER BY user_id", tenant, nxt[1])]
                        await resp.send(orjson.dumps({"pool_id": nxt[1], "term_end": nxt[0].isoformat(),
                                                      "users": holders}).decode(), event="TermEnded")
        return resp
    finally:
        notifier.unsubscribe(tenant, wake)


licence_events.scopes = ("entitlement", "admin", "auditor")


def setup(app: web.Application) -> None:
    from .app import RUNTIME

    app[NOTIFIER] = Wakeups(app[RUNTIME].dsns.app)

    async def start(app):
        await app[NOTIFIER].start()

    async def stop(app):
        await app[NOTIFIER].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/v1/{tenant}/events/licences", licence_events)
