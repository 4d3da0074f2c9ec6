"""`seatledger demo`: a demo tenant with products, pools, rules, groups and a scripted IdP history,
pushed through the real HTTP API (SCIM as an IdP sends it, JSON admin calls), then the commands and
URLs to look at it. Seeded once per data directory; later runs only issue fresh tokens."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiohttp import ClientSession

from ledger.config import settings
from ledger.executor import CommandRejected
from ledger.store import ConcurrencyError
from ledger.tenancy import CreateTenant
from ledger.tokens import IssueToken

from .runtime import Runtime

DEMO_TENANT = "demo"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _z(t: datetime) -> str:
    """ISO time with Z: '+' in a URL query would read as a space."""
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


async def seed(rt: Runtime) -> dict[str, str]:
    """Returns fresh tokens for this run (secrets are shown once, so each run issues its own)."""
    new = True
    try:
        await rt.bus.execute(DEMO_TENANT, CreateTenant(DEMO_TENANT, "Demo Corp", "Europe/Paris"),
                             metadata={"actor": "demo", "source": "admin"}, idempotency_key="demo-tenant")
    except (CommandRejected, ConcurrencyError):
        new = False
    async with rt.pool.acquire() as conn:
        seeded = await conn.fetchval("SELECT count(*) FROM licence_pools WHERE tenant_id = $1", DEMO_TENANT)
    tokens = {}
    for scope in ("scim", "admin", "auditor", "billing", "entitlement"):
        cmd = IssueToken(scope, label="seatledger demo")
        await rt.bus.execute(DEMO_TENANT, cmd, metadata={"actor": "demo", "source": "admin"})
        tokens[scope] = cmd.token
    tokens["_seeded"] = "yes" if (seeded or not new) else ""
    return tokens


async def script(base: str, tokens: dict[str, str]) -> dict:
    """The scripted history, through HTTP: an onboarding burst, a group change, a deactivation, a
    downsize, a short trial pool that expires while you watch, and a backdated correction."""
    t = DEMO_TENANT
    now = datetime.now(timezone.utc)
    facts: dict = {"started": _z(now)}
    async with ClientSession() as s:
        async def scim(method, path, body=None):
            async with s.request(method, f"{base}/scim/v2/{t}{path}", json=body,
                                 headers={"Authorization": f"Bearer {tokens['scim']}",
                                          "Content-Type": "application/scim+json"}) as r:
                return await r.json(content_type=None) if r.status != 204 else None

        async def admin(method, path, body=None):
            async with s.request(method, f"{base}/v1/{t}{path}", json=body,
                                 headers={"Authorization": f"Bearer {tokens['admin']}"}) as r:
                return await r.json(content_type=None)

        await admin("POST", "/products", {"product_id": "design-pro", "name": "Design Pro"})
        await admin("POST", "/products", {"product_id": "analytics", "name": "Analytics Trial"})
        await admin("POST", "/pools", {"pool_id": "design-2026", "product_id": "design-pro", "seats": 8,
                                       "term_start": (now - timedelta(days=30)).isoformat(),
                                       "term_end": (now + timedelta(days=335)).isoformat(),
                                       "currency": "EUR", "price_minor": 4500, "billing_mode": "committed",
                                       "grace_seconds": 3600, "overage_policy": "reject"})
        await admin("POST", "/pools", {"pool_id": "analytics-trial", "product_id": "analytics", "seats": 3,
                                       "term_start": (now - timedelta(days=1)).isoformat(),
                                       "term_end": (now + timedelta(minutes=3)).isoformat(),
                                       "currency": "EUR", "price_minor": 0})
        designers = await scim("POST", "/Groups", {"schemas": [GROUP], "displayName": "Designers"})
        await admin("POST", "/pools/design-2026/rules", {"rule_id": "design-dept", "priority": 10, "kind": "filter",
                                                         "filter": f'{ENT}:department eq "Design"'})
        await admin("POST", "/pools/design-2026/rules", {"rule_id": "designers-group", "priority": 20,
                                                         "kind": "group", "group_id": designers["id"]})
        await admin("POST", "/pools/analytics-trial/rules", {"rule_id": "everyone", "priority": 50,
                                                             "kind": "all_active"})
        # onboarding burst: 12 people, 7 of them in Design
        ids = {}
        for i, (name, dept) in enumerate([("ada", "Design"), ("grace", "Design"), ("linus", "Engineering"),
                                          ("margaret", "Design"), ("alan", "Research"), ("barbara", "Design"),
                                          ("ken", "Engineering"), ("frances", "Design"), ("dennis", "Design"),
                                          ("edsger", "Research"), ("radia", "Design"), ("john", "Sales")]):
            u = await scim("POST", "/Users", {"schemas": [USER, ENT], "userName": f"{name}@demo.example",
                                              "name": {"givenName": name.title()}, "active": True,
                                              ENT: {"department": dept}})
            ids[name] = u["id"]
        after_burst = datetime.now(timezone.utc)
        # a group change: two non-designers join the Designers group (one gets a seat, one waits)
        await scim("PATCH", f"/Groups/{designers['id']}", {"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": ids["linus"]}, {"value": ids["ken"]}]}]})
        # a deactivation (Entra style): grace period, the seat is suspended then ends
        await scim("PATCH", f"/Users/{ids['grace']}", {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}]})
        # a downsize: 8 -> 7 seats, most recently assigned first
        await admin("POST", "/pools/design-2026/resize", {"seats": 7})
        # someone leaves; an admin records afterwards that they really left earlier (a correction)
        await scim("DELETE", f"/Users/{ids['linus']}")          # held an analytics trial seat
        facts["before_correction"] = _z(datetime.now(timezone.utc))
        res = await admin("POST", "/pools/analytics-trial/corrections",
                          {"user_id": ids["linus"], "ended_at": after_burst.isoformat(),
                           "reason": "left right after the onboarding"})
        facts["correction"] = res
        facts["users"] = ids
    return facts


def _data_line(rt: Runtime) -> str:
    if rt.dsns.embedded:
        return f"Data: embedded PostgreSQL under {settings().data_dir} (SEATLEDGER_DATABASE_URL selects another)."
    return "Data: the PostgreSQL named by SEATLEDGER_DATABASE_URL."


def explain(rt: Runtime, base: str, tokens: dict[str, str], facts: dict | None) -> None:
    t = DEMO_TENANT
    h = lambda scope: f"-H 'Authorization: Bearer {tokens[scope]}'"  # noqa: E731
    ada = (facts or {}).get("users", {}).get("ada", "<user id>")
    before = (facts or {}).get("before_correction", "<time>")
    print(f"""
demo tenant: {t}   ({'seeded just now through the HTTP API' if facts else 'seeded on an earlier run'}; tokens are shown once)
  SCIM base URL:   {base}/scim/v2/{t}
  scim token:      {tokens['scim']}
  admin token:     {tokens['admin']}
  auditor token:   {tokens['auditor']}
  billing token:   {tokens['billing']}
  entitlement:     {tokens['entitlement']}

who holds what, who waits:
  curl {h('admin')} {base}/v1/{t}/pools
  curl {h('admin')} '{base}/v1/{t}/pools/design-2026/holders'
  curl {h('admin')} '{base}/v1/{t}/pools/design-2026/holders?state=waiting'
  curl {h('entitlement')} '{base}/v1/{t}/entitlements/ada@demo.example?product=design-pro'
  curl -N {h('entitlement')} {base}/v1/{t}/events/licences      # live; the analytics trial expires 3 minutes after seeding
users and groups (SCIM):
  curl {h('scim')} '{base}/scim/v2/{t}/Users?filter=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department%20eq%20%22Design%22'
the past and the ledger:
  curl {h('auditor')} '{base}/v1/{t}/history/pools/design-2026/holders?asOf={(facts or {}).get('started', '<time>')}'
  curl {h('auditor')} '{base}/v1/{t}/history/pools/analytics-trial/holders?asOf={before}&knownAt={before}'   # before the correction
  curl {h('auditor')} '{base}/v1/{t}/history/pools/analytics-trial/holders?asOf={before}'   # the same instant, after the correction
  curl {h('auditor')} '{base}/v1/{t}/history/users/{ada}?asOf={before}'
  curl {h('auditor')} '{base}/scim/v2/{t}/Users/{ada}?asOf={before}'   # the SCIM User as it was then
  curl {h('auditor')} {base}/v1/{t}/audit/head          # signed head
  curl {h('auditor')} '{base}/v1/{t}/audit/export?format=jsonl' > demo.jsonl && python scripts/verify_export.py demo.jsonl
  curl {h('billing')} '{base}/v1/{t}/billing?period={datetime.now(timezone.utc).strftime('%Y-%m')}'
  seatledger verify --tenant {t}
  seatledger reconcile --tenant {t}

{_data_line(rt)}
Press Ctrl-C to stop (the embedded PostgreSQL stops with it).""")
