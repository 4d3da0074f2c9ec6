"""Licence administration (scope admin) and the entitlement check (scope entitlement), as JSON.

Validation errors are 400s naming the field; a command's refusal keeps its status (404, 409).
"""
from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger import licence_admin as la
from ledger.executor import CommandRejected
from ledger.store import ConcurrencyError
from projections.licences import terms_cached

from .app import PRINCIPAL, RUNTIME
from .entitlement_table import EntitlementTables
from .json_api import Refused, json_error, json_object, json_response

ENTITLEMENT_TABLES = web.AppKey("entitlement_tables", EntitlementTables)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_Body):
    product_id: str
    name: str


class PoolIn(_Body):
    pool_id: str
    product_id: str
    seats: int = Field(ge=0)
    term_start: datetime
    term_end: datetime
    currency: str = "EUR"
    price_minor: int = Field(0, ge=0)
    overage_price_minor: int | None = Field(None, ge=0)
    billing_mode: str = "usage"
    grace_seconds: int = Field(0, ge=0)
    overage_policy: str = "reject"
    overage_cap: int = Field(0, ge=0)


class ResizeIn(_Body):
    seats: int = Field(ge=0)
    effective_at: datetime | None = None


class RepriceIn(_Body):
    price_minor: int = Field(ge=0)
    overage_price_minor: int | None = Field(None, ge=0)
    effective_at: datetime | None = None


class RenewIn(_Body):
    term_end: datetime
    effective_at: datetime | None = None


class CancelIn(_Body):
    effective_at: datetime | None = None


class RuleIn(_Body):
    rule_id: str
    priority: int = 100
    kind: str
    group_id: str | None = None
    filter: str | None = None


class AssignIn(_Body):
    user_id: str


class CorrectionIn(_Body):
    """Exactly one of ended_at (the holding really ended then) or started_at (it really began then)."""
    user_id: str
    ended_at: datetime | None = None
    started_at: datetime | None = None
    reason: str | None = None


def _correction(mi, b: CorrectionIn):
    if (b.ended_at is None) == (b.started_at is None):
        raise Refused(json_error(400, "give exactly one of ended_at or started_at", field="ended_at",
                                 code="invalidValue"))
    if b.ended_at is not None:
        return la.CorrectSeatEnd(mi["pool"], b.user_id, b.ended_at, b.reason)
    return la.CorrectSeatStart(mi["pool"], b.user_id, b.started_at, b.reason)


async def _body(request: web.Request, model: type[_Body]):
    data = await json_object(request)
    try:
        m = model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or None
        raise Refused(json_error(400, f"{field}: {err['msg']}", field=field, code="invalidValue")) from None
    for k, v in m.__dict__.items():
        if isinstance(v, datetime) and v.tzinfo is None:
            raise Refused(json_error(400, f"{k}: a time zone is required (e.g. 2026-12-01T00:00:00Z)", field=k,
                                     code="invalidValue"))
    return m


async def _run(request: web.Request, command) -> web.Response:
    rt = request.app[RUNTIME]
    principal = request[PRINCIPAL]
    try:
        result = await rt.bus.execute(request.match_info["tenant"], command, metadata={
            "actor": principal.actor, "source": "admin", "request_id": request.get("request_id")},
            idempotency_key=request.headers.get("Idempotency-Key"))
    except CommandRejected as exc:
        # and the instant a pool was full, for a refused correction
        return json_error(exc.status, exc.detail, exc.extra.get("field"), exc.code,
                          **{k: exc.extra[k] for k in ("instant",) if k in exc.extra})
    except ConcurrencyError:
        return json_error(409, "concurrent change, retry", code="conflict")
    return json_response(result, 200)


def _handler(model, make):
    async def handle(request: web.Request) -> web.Response:
        try:
            body = await _body(request, model) if model else None
            command = make(request.match_info, body)
        except Refused as bad:
            return bad.response
        return await _run(request, command)
    handle.scopes = ("admin",)
    return handle


def _pool_cmd(cls, **fixed):
    return lambda mi, b: cls(pool_id=mi["pool"], **b.model_dump(), **fixed)


async def _fetch(request, sql, *args):
    async with request.app[RUNTIME].pool.acquire() as conn:
        return await conn.fetch(sql, request.match_info["tenant"], *args)


async def list_pools(request: web.Request) -> web.Response:
    rows = await _fetch(request, "SELECT p.pool_id, p.product_id, p.terms, p.held, "
                        "(SELECT count(*) FROM licence_seats s WHERE s.tenant_id = p.tenant_id AND s.pool_id = p.pool_id "
                        "AND s.state = 'waiting') AS waiting FROM licence_pools p WHERE p.tenant_id = $1 ORDER BY p.pool_id")
    from projections.licences import terms_from_json
    now = datetime.now(timezone.utc)
    out = []
    for r in rows:
        t = terms_from_json(r["terms"])
        out.append({"pool_id": r["pool_id"], "product_id": r["product_id"], "seats": t.seats_at(now),
                    "term_start": t.term_start.isoformat(), "term_end": t.term_end_at(now).isoformat(),
                    "in_term": t.in_term(now), "held": r["held"], "waiting": r["waiting"],
                    "overage_policy": t.overage_policy, "billing_mode": t.billing_mode, "currency": t.currency})
    return json_response({"pools": out})


list_pools.scopes = ("admin", "auditor")


async def holders(request: web.Request) -> web.Response:
    state = request.query.get("state", "active")
    if state not in ("active", "waiting", "suspended"):
        return json_error(400, "state is active, waiting or suspended", field="state")
    try:
        limit = min(int(request.query.get("limit", "1000")), 10_000)
        after = request.query.get("after", "")
    except ValueError:
        return json_error(400, "limit is an integer", field="limit")
    order = "priority, requested_at, user_id" if state == "waiting" else "user_id"
    rows = await _fetch(request, "SELECT user_id, state, grants, priority, since, requested_at, overage, suspended_until "
                        "FROM licence_seats WHERE tenant_id = $1 AND pool_id = $2 AND state = $3 "
                        f"AND ($4 = '' OR user_id > $4 OR $3 = 'waiting') ORDER BY {order} LIMIT $5",
                        request.match_info["pool"], state, after, limit)
    return json_response({"pool_id": request.match_info["pool"], "state": state, "items": [_seat(r) for r in rows]})


holders.scopes = ("admin", "auditor")


def _seat(r) -> dict:
    return {"user_id": r["user_id"], "state": r["state"], "grants": list(r["grants"]), "priority": r["priority"],
            "since": r["since"].isoformat(), "requested_at": r["requested_at"].isoformat(), "overage": r["overage"],
            "suspended_until": r["suspended_until"].isoformat() if r["suspended_until"] else None}


async def user_licences(request: web.Request) -> web.Response:
    rows = await _fetch(request, "SELECT s.pool_id, p.product_id, s.user_id, s.state, s.grants, s.priority, s.since, "
                        "s.requested_at, s.overage, s.suspended_until FROM licence_seats s JOIN licence_pools p "
                        "ON p.tenant_id = s.tenant_id AND p.pool_id = s.pool_id WHERE s.tenant_id = $1 "
                        "AND s.user_id = $2 ORDER BY s.pool_id", request.match_info["user"])
    return json_response({"user_id": request.match_info["user"],
                          "licences": [{"pool_id": r["pool_id"], "product_id": r["product_id"], **_seat(r)}
                                       for r in rows]})


user_licences.scopes = ("admin", "auditor")


# By id (the primary key) or userName (its unique index): two index lookups, not an OR. One round trip.
_ENTITLEMENT_SQL = (
    "WITH u AS ((SELECT id FROM scim_resources WHERE tenant_id = $1 AND id = $2 AND type = 'User') "
    "UNION ALL (SELECT id FROM scim_resources WHERE tenant_id = $1 AND type = 'User' "
    "AND doc_ci->>'userName' = $4) LIMIT 1) "
    "SELECT u.id AS user_id, p.pool_id, p.terms, p.held, s.state, s.since, s.suspended_until, s.ord, s.grants "
    "FROM u JOIN licence_seats s ON s.tenant_id = $1 AND s.user_id = u.id "
    "JOIN licence_pools p ON p.tenant_id = $1 AND p.pool_id = s.pool_id AND p.product_id = $3")
_NO_LICENCE = {"allowed": False, "reason": "no_licence", "pool": None, "since": None, "until": None}


async def entitlement(request: web.Request) -> web.Response:
    """May this user use the product right now? Compared with the term end and scheduled downsizes
    at read time, so an expiry is effective at its exact instant even before the scheduler ran.
    The hot path of the licensed application: from the tenant's in-memory table while nothing was
    committed since it was read (api/entitlement_table.py), else one statement (asyncpg prepares it
    once per connection); no per-request imports, orjson."""
    product = request.query.get("product")
    if not product:
        return json_error(400, "product is required", field="product")
    mi = request.match_info
    tenant, who = mi["tenant"], mi["user"]
    now = datetime.now(timezone.utc)
    rows = request.app[ENTITLEMENT_TABLES].rows(tenant, who, product)
    if rows is None or any(_over(r, now) > 0 for r in rows):
        rows, cut = await _rows_from_database(request, tenant, who, product, now)
    else:
        cut = {}
    best = None
    for r in rows:
        t = terms_cached(r["terms"])
        until = t.term_end_at(now)
        if r["state"] == "active":
            if not t.in_term(now):
                ans = {"allowed": False, "reason": "expired" if now >= until else "not_started"}
            elif cut.get(r["pool_id"]):
                ans = {"allowed": False, "reason": "downsized"}
            else:
                ans = {"allowed": True, "reason": ",".join(sorted(r["grants"]))}
        else:
            ans = {"allowed": False, "reason": r["state"]}
        ans.update(pool=r["pool_id"], since=r["since"].isoformat(), until=until.isoformat(), user_id=r["user_id"])
        if best is None or (ans["allowed"] and not best["allowed"]):
            best = ans
    if best is None:
        best = dict(_NO_LICENCE)
    best["product"] = product
    best["checked_at"] = now.isoformat()
    return json_response(best)


def _over(r, now: datetime) -> int:
    """For a held seat: how far its pool is above its capacity now (a downsize the scheduler has not
    carried out yet); 0 for a waiting one or a pool within capacity."""
    if r["state"] == "waiting":
        return 0
    return max(0, r["held"] - terms_cached(r["terms"]).capacity(now))


async def _rows_from_database(request, tenant: str, who: str, product: str, now: datetime):
    async with request.app[RUNTIME].pool.acquire() as conn:
        rows = await conn.fetch(_ENTITLEMENT_SQL, tenant, who, product, who.casefold())
        cut = {}
        for r in rows:
            over = _over(r, now)
            if over > 0:
                # a scheduled downsize took effect and the scheduler has not acted yet: the most
                # recently assigned `over` seats are no longer valid
                newer = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT 1 FROM licence_seats WHERE tenant_id = $1 AND pool_id = $2 "
                    "AND state <> 'waiting' AND ord > $3 LIMIT $4) x", tenant, r["pool_id"], r["ord"], over)
                cut[r["pool_id"]] = newer < over
    return rows, cut


entitlement.scopes = ("entitlement", "admin")


def setup(app: web.Application) -> None:
    app[ENTITLEMENT_TABLES] = tables = EntitlementTables(app[RUNTIME].pool, None)
    app[RUNTIME].bus.on_commit.append(tables.committed)

    async def follow_the_ledger(app):
        from .events_sse import NOTIFIER      # the process's LISTEN connection (started on startup)
        tables.notifier = app.get(NOTIFIER)

    async def stop(app):
        if tables.committed in app[RUNTIME].bus.on_commit:
            app[RUNTIME].bus.on_commit.remove(tables.committed)
        await tables.close()

    app.on_startup.append(follow_the_ledger)
    app.on_cleanup.append(stop)
    r = app.router
    base = "/v1/{tenant}"
    r.add_post(base + "/products", _handler(ProductIn, lambda mi, b: la.DefineProduct(b.product_id, b.name)))
    r.add_get(base + "/pools", list_pools)
    r.add_post(base + "/pools", _handler(PoolIn, lambda mi, b: la.CreatePool(**b.model_dump())))
    r.add_post(base + "/pools/{pool}/resize", _handler(ResizeIn, _pool_cmd(la.ResizePool)))
    r.add_post(base + "/pools/{pool}/reprice", _handler(RepriceIn, _pool_cmd(la.RepricePool)))
    r.add_post(base + "/pools/{pool}/renew", _handler(RenewIn, _pool_cmd(la.RenewPool)))
    r.add_post(base + "/pools/{pool}/cancel", _handler(CancelIn, _pool_cmd(la.CancelPool)))
    r.add_post(base + "/pools/{pool}/reevaluate", _handler(None, lambda mi, b: la.Reevaluate(mi["pool"])))
    r.add_post(base + "/pools/{pool}/rules", _handler(RuleIn, _pool_cmd(la.AddRule)))
    r.add_delete(base + "/pools/{pool}/rules/{rule}",
                 _handler(None, lambda mi, b: la.RemoveRule(mi["pool"], mi["rule"])))
    r.add_post(base + "/pools/{pool}/assignments", _handler(AssignIn, _pool_cmd(la.AdminAssign)))
    r.add_delete(base + "/pools/{pool}/assignments/{user}",
                 _handler(None, lambda mi, b: la.AdminRevoke(mi["pool"], mi["user"])))
    r.add_post(base + "/pools/{pool}/corrections", _handler(CorrectionIn, _correction))
    r.add_get(base + "/pools/{pool}/holders", holders)
    r.add_get(base + "/users/{user}/licences", user_licences)
    r.add_get(base + "/entitlements/{user}", entitlement)
