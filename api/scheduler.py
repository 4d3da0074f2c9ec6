"""The licence scheduler (apscheduler): records time-driven seat events as soon as it can.

A sweep runs at start (catching up on everything missed while the service was down) and then every
`SEATLEDGER_SCHEDULER_SECONDS`; besides, each pool's next due instant (term end, scheduled change,
end of a grace period) gets a one-off job at that instant, so an expiry is recorded within moments
of it. Events carry their effective instant (the term end, not the time we got to it) and natural
idempotency keys, so several processes running this scheduler record each once.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ledger.executor import CommandBus
from ledger.licence_effects import TickLicences

log = logging.getLogger(__name__)
META = {"actor": "scheduler", "source": "scheduler"}


class LicenceScheduler:
    def __init__(self, bus: CommandBus, pool, interval: float | None = None):
        self.bus, self.pool = bus, pool
        self.interval = interval or float(os.environ.get("SEATLEDGER_SCHEDULER_SECONDS", "30"))
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self.ticks = 0

    def start(self) -> None:
        self.scheduler.add_job(self.sweep, "interval", seconds=self.interval, id="sweep",
                               next_run_time=datetime.now(timezone.utc), max_instances=1, coalesce=True)
        every = float(os.environ.get("SEATLEDGER_RECONCILE_SECONDS", "3600"))
        self.scheduler.add_job(self.reconcile, "interval", seconds=every, id="reconcile",
                               max_instances=1, coalesce=True)
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def sweep(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                tenants = [r["tenant_id"] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM licence_pools")]
            for t in tenants:
                await self.tick(t)
                await self._plan(t)
        except Exception:  # noqa: BLE001 - a failed sweep is retried by the next one
            log.exception("scheduler sweep failed")

    async def reconcile(self) -> None:
        """The scheduled reconciler: find drift and fix it with compensating events."""
        from ledger.reconcile import reconcile
        try:
            async with self.pool.acquire() as conn:
                tenants = [r["tenant_id"] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM licence_pools")]
            for t in tenants:
                drift, appended = await reconcile(self.bus, self.pool, t, fix=True)
                if drift:
                    log.warning("tenant %s: %d drift item(s) fixed with %d event(s)", t, len(drift), appended)
        except Exception:  # noqa: BLE001 - retried at the next run
            log.exception("scheduled reconciliation failed")

    async def tick(self, tenant: str) -> int:
        res = await self.bus.execute(tenant, TickLicences(), metadata=META)
        self.ticks += 1
        return res["events"]

    async def _plan(self, tenant: str) -> None:
        """One-off jobs at the next due instants of this tenant's pools, within the sweep interval."""
        from projections.licences import terms_from_json
        now = datetime.now(timezone.utc)
        horizon = now + timedelta(seconds=self.interval)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT terms FROM licence_pools WHERE tenant_id = $1", tenant)
            grace = await conn.fetchval("SELECT min(suspended_until) FROM licence_seats WHERE tenant_id = $1 "
                                        "AND state = 'suspended'", tenant)
        instants = [grace] if grace else []
        for r in rows:
            t = terms_from_json(r["terms"])
            instants.append(t.term_end_at(now))
            instants.extend(at for at, _, _ in t.changes)
        for at in sorted({i for i in instants if now < i <= horizon}):
            self.scheduler.add_job(self.tick, "date", run_date=at + timedelta(milliseconds=5), args=[tenant],
                                   id=f"due:{tenant}:{at.isoformat()}", replace_existing=True)
