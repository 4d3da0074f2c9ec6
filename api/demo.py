"""`seatledger demo`: a demo tenant, seeded idempotently, and how to look at it."""
from __future__ import annotations

from ledger.executor import CommandRejected
from ledger.store import ConcurrencyError
from ledger.tenancy import CreateTenant
from ledger.tokens import IssueToken

from .runtime import Runtime

DEMO_TENANT = "demo"


async def seed(rt: Runtime) -> dict[str, str]:
    """Returns fresh tokens for this run (secrets are shown once, so each run issues its own)."""
    try:
        await rt.bus.execute(DEMO_TENANT, CreateTenant(DEMO_TENANT, "Demo Corp", "Europe/Paris"),
                             metadata={"actor": "demo", "source": "admin"}, idempotency_key="demo-tenant")
    except (CommandRejected, ConcurrencyError):
        pass  # already there
    tokens = {}
    for scope in ("scim", "auditor"):
        cmd = IssueToken(scope, label="seatledger demo")
        await rt.bus.execute(DEMO_TENANT, cmd, metadata={"actor": "demo", "source": "admin"})
        tokens[scope] = cmd.token
    return tokens


def explain(rt: Runtime, base: str, tokens: dict[str, str]) -> None:
    print(f"""
demo tenant: {DEMO_TENANT}   (tokens below are shown once)
  SCIM base URL:  {base}/scim/v2/{DEMO_TENANT}
  scim token:     {tokens['scim']}
  auditor token:  {tokens['auditor']}

  curl -H 'Authorization: Bearer {tokens['scim']}' {base}/scim/v2/{DEMO_TENANT}/ServiceProviderConfig
  curl -H 'Authorization: Bearer {tokens['auditor']}' {base}/v1/{DEMO_TENANT}/audit/head
  seatledger verify --tenant {DEMO_TENANT}          # check the hash chain
  curl {base}/healthz

Data: embedded PostgreSQL under ~/.local/share/seatledger (or SEATLEDGER_DATABASE_URL).
Press Ctrl-C to stop (the embedded PostgreSQL stops with it).""")
