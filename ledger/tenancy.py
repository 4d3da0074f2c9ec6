"""Tenants are ledger facts too: TenantCreated opens a tenant's chain."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .events import Event, NewEvent, event
from .executor import Command, CommandRejected, Decision, Handler
from .store import StreamChange

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RESERVED = {"audit"}          # /v1/audit/... is service-wide (the public key)


@event("TenantCreated")
class TenantCreated(Event):
    tenant: str
    name: str
    timezone: str = "UTC"


class TenantHandler(Handler):
    def streams(self, cmd):
        return ["tenant"]

    def decide(self, state, cmd: "CreateTenant") -> Decision:
        if not TENANT_RE.match(cmd.tenant) or cmd.tenant in RESERVED:
            raise CommandRejected("invalidValue", "tenant ids are 1-63 of a-z, 0-9 and '-'")
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(cmd.timezone)
        except Exception:  # noqa: BLE001 - any failure means an unknown zone
            raise CommandRejected("invalidValue", f"unknown time zone {cmd.timezone!r}") from None
        return Decision([StreamChange("tenant", 0, [NewEvent(TenantCreated(
            tenant=cmd.tenant, name=cmd.name or cmd.tenant, timezone=cmd.timezone))])],
            result={"tenant": cmd.tenant})


@dataclass
class CreateTenant(Command):
    tenant: str
    name: str = ""
    timezone: str = "UTC"
    handler = TenantHandler()
