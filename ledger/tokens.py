"""Bearer tokens: random 256-bit secrets bound to a tenant and a scope, shown once, stored as hashes.

A token reads `slt_<token id>_<secret>`; the id finds the row, the secret's SHA-256 is compared in
constant time. Issuing and revoking are ledger events; two live tokens may overlap for rotation.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from .events import Event, NewEvent, event
from .executor import Command, CommandRejected, Decision, Handler
from .store import StreamChange

SCOPES = ("scim", "admin", "auditor", "billing", "entitlement")


@event("TokenIssued")
class TokenIssued(Event):
    token_id: str
    scope: str
    secret_sha256: str          # hex; the secret itself is never recorded
    label: str | None = None


@event("TokenRevoked")
class TokenRevoked(Event):
    token_id: str


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    if not token.startswith("slt_"):
        return None
    tid, sep, secret = token[4:].partition("_")
    if not sep or not tid or not secret or len(token) > 200:
        return None
    return tid, secret


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class TokenHandler(Handler):
    async def load(self, conn, tenant, commands):
        ids = [c.token_id for c in commands if isinstance(c, RevokeToken)]
        rows = await conn.fetch("SELECT token_id, revoked_at FROM api_tokens WHERE tenant_id = $1 "
                                "AND token_id = ANY($2::text[])", tenant, ids) if ids else []
        live = {r["token_id"]: r["revoked_at"] is None for r in rows}
        live[None] = bool(await conn.fetchval(
            "SELECT 1 FROM events WHERE tenant_id = $1 AND stream = 'tenant' AND stream_version = 1", tenant))
        return live

    def decide(self, live: dict, cmd) -> Decision:
        if isinstance(cmd, IssueToken):
            if not live[None]:
                raise CommandRejected("notFound", "no such tenant", status=404)
            if cmd.scope not in SCOPES:
                raise CommandRejected("invalidValue", f"scope must be one of {', '.join(SCOPES)}")
            ev = TokenIssued(token_id=cmd.token_id, scope=cmd.scope, secret_sha256=hash_secret(cmd.secret).hex(),
                             label=cmd.label)
            return Decision([StreamChange(f"token-{cmd.token_id}", 0, [NewEvent(ev)])],
                            result={"token_id": cmd.token_id, "scope": cmd.scope})
        if cmd.token_id not in live:
            raise CommandRejected("notFound", f"no token {cmd.token_id} in this tenant", status=404)
        if not live[cmd.token_id]:
            return Decision([], result={"token_id": cmd.token_id, "revoked": True})
        return Decision([StreamChange(f"token-{cmd.token_id}", None, [NewEvent(TokenRevoked(token_id=cmd.token_id))])],
                        result={"token_id": cmd.token_id, "revoked": True})

    def evolve(self, live, cmd, decision):
        if isinstance(cmd, RevokeToken):
            live[cmd.token_id] = False

    async def project(self, conn, tenant, state, recorded):
        for _, events in recorded:
            for e in events:
                if e.type == "TokenIssued":
                    await conn.execute(
                        "INSERT INTO api_tokens (token_id, tenant_id, scope, secret_hash, label, created_at) "
                        "VALUES ($1, $2, $3, $4, $5, $6)", e.data["token_id"], tenant, e.data["scope"],
                        bytes.fromhex(e.data["secret_sha256"]), e.data.get("label"), e.recorded_at)
                elif e.type == "TokenRevoked":
                    await conn.execute("UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND token_id = $2",
                                       tenant, e.data["token_id"], e.recorded_at)


TOKENS = TokenHandler()


def _new_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower().rstrip("=")


@dataclass
class IssueToken(Command):
    scope: str
    label: str | None = None
    token_id: str = field(default_factory=_new_id)
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)   # 256 bits
    handler = TOKENS

    @property
    def token(self) -> str:
        return f"slt_{self.token_id}_{self.secret}"


@dataclass
class RevokeToken(Command):
    token_id: str
    handler = TOKENS
