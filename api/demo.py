"""`seatledger demo`: a demo tenant, seeded idempotently, and how to look at it."""
from __future__ import annotations

from ledger.executor import CommandRejected
from ledger.store import ConcurrencyError
from ledger.tenancy import CreateTenant

from .runtime import Runtime

DEMO_TENANT = "demo"


async def seed(rt: Runtime) -> None:
    try:
        await rt.bus.execute(DEMO_TENANT, CreateTenant(DEMO_TENANT, "Demo Corp", "Europe/Paris"),
                             metadata={"actor": "demo", "source": "admin"}, idempotency_key="demo-tenant")
    except (CommandRejected, ConcurrencyError):
        pass  # already there


def explain(rt: Runtime, base: str) -> None:
    print(f"""
demo tenant: {DEMO_TENANT}
  health:        curl {base}/healthz
  verify ledger: seatledger verify --tenant {DEMO_TENANT}
  data dir:      embedded PostgreSQL under ~/.local/share/seatledger (SEATLEDGER_DATA_DIR)
Press Ctrl-C to stop (the embedded PostgreSQL stops with it).""")
