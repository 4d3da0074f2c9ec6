"""A tenant with one bearer token per scope, created through the command bus as the CLI does."""
from __future__ import annotations

from ledger.tenancy import CreateTenant
from ledger.tokens import SCOPES, IssueToken


async def tenant_with_tokens(rt, tenant: str) -> dict[str, str]:
    """{'tenant': id, 'scim': token, 'admin': ..., ...}: one token per scope."""
    await rt.bus.execute(tenant, CreateTenant(tenant, tenant))
    out = {"tenant": tenant}
    for s in SCOPES:
        cmd = IssueToken(s)
        await rt.bus.execute(tenant, cmd)
        out[s] = cmd.token
    return out
