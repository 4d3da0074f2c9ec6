"""A tenant's seats in memory, so the entitlement check (the licensed application's hot path) can be
answered without a database round trip while the tenant is quiet.

Exact by construction, never a guess:
* a table is loaded in one REPEATABLE READ snapshot together with the tenant's head sequence, so it
  is the state as of that sequence - every user (id and casefolded userName: an id match wins, as in
  the SQL path) and every seat with its pool's terms;
* it is used only while no later event exists. A commit of this process marks it stale before the
  writer's caller is answered (CommandBus.on_commit: read-your-writes); the ledger NOTIFYs
  `tenant:seq` at every commit, and the process's LISTEN connection (ledger.subscription.Wakeups) marks
  it stale for the commits of other processes, at once; a check
  on a stale table reads the database as before. If NOTIFY were lost (connection down), a verifier
  compares the head sequence of every loaded tenant every VERIFY_SECONDS and marks stale ones, and
  a table not verified within MAX_UNVERIFIED_SECONDS is not used. So a committed revocation stops
  being allowed here within moments, and within 1 s whatever happens to NOTIFY;
* what depends on the clock (term ends, scheduled changes) is still decided at read time from the
  terms, by the same code as the SQL path; a pool above its capacity (a downsize the scheduler has
  not carried out yet) goes to the database, which finds the seats it cuts.
A stale table is reloaded once the tenant has been quiet for QUIET_SECONDS, so a burst of SCIM
writes does not make the service reload on every commit: meanwhile checks read the database.
"""
from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

VERIFY_SECONDS = 0.25
MAX_UNVERIFIED_SECONDS = 0.75
QUIET_SECONDS = 1.0
MAX_TENANTS = 16            # tables kept (the first tenants checked); others use the database path
MAX_USERS = 1_000_000       # a larger tenant is answered from the database (memory stays bounded)
CHUNK = 5_000               # rows per round trip while loading

_USERS = "SELECT id, doc_ci->>'userName' AS un FROM scim_resources WHERE tenant_id = $1 AND type = 'User'"
_POOLS = "SELECT pool_id, product_id, terms, held FROM licence_pools WHERE tenant_id = $1"
_SEATS = ("SELECT user_id, pool_id, state, since, suspended_until, ord, grants FROM licence_seats "
          "WHERE tenant_id = $1")


class _Table:
    """Users (ids, casefolded userNames), pools (one row each: terms are shared by their seats) and
    seats (compact records) as of sequence `seq`."""
    __slots__ = ("seq", "ids", "names", "pools", "seats", "stale", "verified", "last_change")

    def __init__(self, seq: int, ids: set[str], names: dict[str, str], pools: dict, seats: dict[str, list]):
        self.seq, self.ids, self.names, self.pools, self.seats = seq, ids, names, pools, seats
        self.stale = False
        self.verified = time.monotonic()
        self.last_change = 0.0

    def mark_stale(self) -> None:
        """Something was committed since it was read: the database answers until it is reloaded."""
        self.stale, self.last_change = True, time.monotonic()


class EntitlementTables:
    def __init__(self, pool, notifier):
        self.pool, self.notifier = pool, notifier
        self._tables: dict[str, _Table] = {}
        self._loading: dict[str, asyncio.Task] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._changes: dict[str, int] = {}         # commits notified per tenant
        self._followers: list[asyncio.Task] = []
        self._verifier: asyncio.Task | None = None
        self.hits = self.loads = 0              # observability: checks answered from memory, loads

    # ---- the hot path -------------------------------------------------------------------------
    def rows(self, tenant: str, who: str, product: str) -> list[dict] | None:
        """The seat rows of `who` (id, else userName) for `product`, or None: ask the database."""
        t = self._tables.get(tenant)
        if t is None or t.stale or time.monotonic() - t.verified > MAX_UNVERIFIED_SECONDS:
            self._want(tenant, t)
            return None
        uid = who if who in t.ids else t.names.get(who.casefold())
        self.hits += 1
        if uid is None:
            return []
        out = []
        for s in t.seats.get(uid, ()):
            p = t.pools[s["pool_id"]]
            if p["product_id"] == product:
                out.append({"user_id": uid, "pool_id": s["pool_id"], "terms": p["terms"], "held": p["held"],
                            "state": s["state"], "since": s["since"], "suspended_until": s["suspended_until"],
                            "ord": s["ord"], "grants": s["grants"]})
        return out

    # ---- keeping tables exact ------------------------------------------------------------------
    def committed(self, tenant: str, seq: int) -> None:
        """This process committed (CommandBus.on_commit): stale before the writer's caller hears back."""
        self._changes[tenant] = self._changes.get(tenant, 0) + 1
        t = self._tables.get(tenant)
        if t is not None and seq != t.seq:
            t.mark_stale()

    def _want(self, tenant: str, t: _Table | None) -> None:
        if tenant in self._loading or self.notifier is None or self.notifier.conn is None:
            return
        if t is not None and time.monotonic() - t.last_change < QUIET_SECONDS:
            return                                  # still busy: the database path serves meanwhile
        if t is None and len(self._tables) >= MAX_TENANTS:
            return
        self._loading[tenant] = asyncio.ensure_future(self._load(tenant))
        self._loading[tenant].add_done_callback(lambda f: (self._loading.pop(tenant, None),
                                                           f.cancelled() or f.exception()))

    async def _load(self, tenant: str) -> None:
        if tenant not in self._wakes:
            self._wakes[tenant] = self.notifier.subscribe(tenant)
            self._followers.append(asyncio.ensure_future(self._follow(tenant, self._wakes[tenant])))
        seen = self._changes.get(tenant, 0)
        async with self.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                seq = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
                n = await conn.fetchval("SELECT count(*) FROM scim_resources WHERE tenant_id = $1", tenant)
                if n > MAX_USERS:
                    return
                # read in chunks through a cursor: each chunk is a round trip during which the
                # process serves other requests, so a load never stalls the event loop for long
                ids: set[str] = set()
                names: dict[str, str] = {}
                async for r in conn.cursor(_USERS, tenant, prefetch=CHUNK):
                    ids.add(r["id"])
                    if r["un"] is not None:
                        names[r["un"]] = r["id"]
                pools = {r["pool_id"]: r for r in await conn.fetch(_POOLS, tenant)}
                seats: dict[str, list] = {}
                async for r in conn.cursor(_SEATS, tenant, prefetch=CHUNK):
                    seats.setdefault(r["user_id"], []).append(r)
        t = _Table(seq, ids, names, pools, seats)
        if self._changes.get(tenant, 0) != seen:       # a commit was notified while we read
            t.mark_stale()
        self._tables[tenant] = t
        self.loads += 1
        self._start_verifier()

    async def _follow(self, tenant: str, wake: asyncio.Event) -> None:
        """Every commit of the tenant (NOTIFY) counts a change and marks its table stale."""
        while True:
            await wake.wait()
            wake.clear()
            self._changes[tenant] = self._changes.get(tenant, 0) + 1
            t = self._tables.get(tenant)
            if t is not None:
                t.mark_stale()

    def _start_verifier(self) -> None:
        if self._verifier is None or self._verifier.done():
            self._verifier = asyncio.ensure_future(self._verify())

    async def _verify(self) -> None:
        """Independent of NOTIFY: the head sequence of every loaded tenant, compared every VERIFY_SECONDS."""
        while self._tables:
            await asyncio.sleep(VERIFY_SECONDS)
            tenants = [k for k, t in self._tables.items() if not t.stale]
            if not tenants:
                continue
            started = time.monotonic()
            try:
                async with self.pool.acquire() as conn:
                    heads = {r["tenant_id"]: r["seq"] for r in await conn.fetch(
                        "SELECT tenant_id, seq FROM tenant_heads WHERE tenant_id = ANY($1::text[])", tenants)}
            except Exception:  # noqa: BLE001 - unverified tables age out and are not used
                log.warning("entitlement tables: head check failed", exc_info=True)
                continue
            for k in tenants:
                t = self._tables.get(k)
                if t is None:
                    continue
                if heads.get(k, 0) != t.seq:
                    t.mark_stale()
                else:
                    t.verified = started

    async def close(self) -> None:
        for task in [self._verifier, *self._loading.values(), *self._followers]:
            if task is not None:
                task.cancel()
        for tenant, wake in self._wakes.items():
            self.notifier.unsubscribe(tenant, wake)
        self._tables.clear()
