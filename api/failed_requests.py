"""The failed-request log: every rejected SCIM request (4xx on /scim/v2/<tenant>/…) is kept per
tenant — time, method, path, status, scimType, detail, request id — so the tenant's admin can see
why a user did not arrive (`GET /v1/<tenant>/scim/failures`, api/scim_admin.py).

* No bodies, no query strings (a filter names a userName), no personal values: `detail` texts
  quote the values they reject (`expected a boolean, got 'Ada'`, `'emails[value eq "a@x"]' matches
  no value`, filter tokens), so every quoted part is replaced by `'…'` unless it is a schema
  attribute name (what an admin needs to fix a mapping); e-mail-like words are replaced as
  well, and path segments that are not resource ids (`/Users/ada@x.com`) become `…`.
* Written outside the failed request's transaction (there is none: nothing else is written for
  a failure) and off the request path: `record` appends to an in-memory buffer; a background
  flush writes the buffer in one INSERT … SELECT FROM unnest every FLUSH_SECONDS (or at once
  past FLUSH_ROWS) and trims each touched tenant to its newest `keep` rows in the same
  transaction. Only existing tenants get rows (a 401 flood on made-up tenant names writes
  nothing). The buffer is bounded (MAX_BUFFER; past it entries are dropped and counted).
  Listing flushes first, so an admin sees a failure as soon as its response has gone out.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from datetime import datetime, timezone
from functools import lru_cache

import orjson
from aiohttp import web

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
FLUSH_ROWS = 500
MAX_BUFFER = 50_000
DEFAULT_KEEP = 10_000
MAX_DETAIL = 500

_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
_EMAIL = re.compile(r"[^\s'\"<>()\[\],;]+@[^\s'\"<>()\[\],;]+")
_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SCIM_PATH = re.compile(r"^(/scim/v2/[^/]+/)(Users|Groups)/([^/]+)(.*)$", re.IGNORECASE)


@lru_cache(maxsize=1)
def _attribute_names() -> frozenset[str]:
    """Lower-cased names that may stay in a detail: schema attribute names and paths, URNs."""
    from ledger.directory import GROUP_RS, USER_RS
    names: set[str] = {"add", "replace", "remove", "members", "value", "operations", "op", "path",
                       "schemas", "id", "meta", "externalid", "eq", "ne", "co", "sw", "ew", "gt",
                       "ge", "lt", "le", "pr", "and", "or", "not", "eof", "word", "string"}
    for rs in (USER_RS, GROUP_RS):
        for urn, is_ext, a in rs.all_attributes():
            names.add(urn.lower())
            for n in (a.name, f"{urn}:{a.name}"):
                names.add(n.lower())
                for s in getattr(a, "sub_attributes", None) or ():
                    names.add(f"{n}.{s.name}".lower())
                    names.add(s.name.lower())
    return frozenset(names)


def redact(text: str) -> str:
    """`text` without the values it quotes (see the module docstring)."""
    keep = _attribute_names()

    def quoted(m: re.Match) -> str:
        inner = m.group(0)[1:-1]
        if inner.lower() in keep or not any(ch.isalnum() for ch in inner):
            return m.group(0)       # an attribute name, an operator or punctuation
        return "'…'"

    out = _QUOTED.sub(quoted, text)
    out = _EMAIL.sub("…", out)
    return out[:MAX_DETAIL]


def safe_path(path: str) -> str:
    m = _SCIM_PATH.match(path)
    if m and not _ID.match(m.group(3)) and not m.group(3).startswith("."):
        return f"{m.group(1)}{m.group(2)}/…{m.group(4)}"[:300]
    return path[:300]


class FailureLog:
    def __init__(self, pool, keep: int = DEFAULT_KEEP):
        self.pool = pool
        self.keep = keep
        self.dropped = 0
        self._buf: list[tuple] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()

    def record(self, tenant: str, method: str, path: str, status: int, scim_type: str | None,
               detail: str, request_id: str, at: datetime | None = None) -> None:
        if len(self._buf) >= MAX_BUFFER:
            self.dropped += 1
            return
        self._buf.append((tenant, at or datetime.now(timezone.utc), method[:16], safe_path(path),
                          status, scim_type[:32] if scim_type else None, redact(detail or ""),
                          (request_id or "")[:128]))
        if self._closed:
            return
        if len(self._buf) >= FLUSH_ROWS:
            t = asyncio.get_running_loop().create_task(self._flush_logged())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._later())

    def record_response(self, request: web.Request, tenant: str, resp: web.StreamResponse) -> None:
        """Records a 4xx SCIM response (its error body gives scimType and detail)."""
        scim_type, detail = None, resp.reason or ""
        body = getattr(resp, "body", None)
        if isinstance(body, (bytes, bytearray)) and 0 < len(body) < 65536:
            try:
                js = orjson.loads(body)
            except orjson.JSONDecodeError:
                js = None
            if isinstance(js, dict):
                st, dt = js.get("scimType"), js.get("detail")
                scim_type = st if isinstance(st, str) else None
                detail = dt if isinstance(dt, str) else detail
        self.record(tenant, request.method, request.path, resp.status, scim_type, detail,
                    request.get("request_id", ""))

    async def _later(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - losing a log entry must not break anything
            log.warning("writing the failed-request log failed: %s", exc)

    async def flush(self) -> None:
        async with self._lock:
            if not self._buf:
                return
            rows, self._buf = self._buf, []
            cols = list(zip(*rows))
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO scim_failures (tenant_id, at, method, path, status, scim_type, "
                        "detail, request_id) SELECT t.tenant_id, t.at, t.method, t.path, t.status, "
                        "t.scim_type, t.detail, t.request_id FROM unnest($1::text[], $2::timestamptz[], "
                        "$3::text[], $4::text[], $5::smallint[], $6::text[], $7::text[], $8::text[]) "
                        "WITH ORDINALITY AS t(tenant_id, at, method, path, status, scim_type, detail, "
                        "request_id, n) WHERE EXISTS (SELECT 1 FROM tenant_heads h "
                        "WHERE h.tenant_id = t.tenant_id) ORDER BY t.n",  # ids follow the order of events
                        *[list(c) for c in cols])
                    await conn.execute(
                        "DELETE FROM scim_failures f USING (SELECT t.tenant_id, (SELECT s.seq FROM "
                        "scim_failures s WHERE s.tenant_id = t.tenant_id ORDER BY s.seq DESC "
                        "OFFSET $2 LIMIT 1) AS cut FROM unnest($1::text[]) AS t(tenant_id)) c "
                        "WHERE f.tenant_id = c.tenant_id AND f.seq <= c.cut",
                        sorted(set(cols[0])), self.keep)

    async def close(self, app=None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        await self._flush_logged()

    async def list(self, tenant: str, limit: int, before: int | None) -> list[dict]:
        await self._flush_logged()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, at, method, path, status, scim_type, detail, request_id FROM scim_failures "
                "WHERE tenant_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                tenant, before, limit)
        return [{"id": r["seq"], "time": r["at"].astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
                 "method": r["method"], "path": r["path"], "status": r["status"],
                 "scimType": r["scim_type"], "detail": r["detail"], "requestId": r["request_id"]}
                for r in rows]


FAILURES = web.AppKey("failure_log", FailureLog)


def setup(app: web.Application, pool) -> None:
    keep = int(os.environ.get("SEATLEDGER_FAILURES_KEEP") or DEFAULT_KEEP)
    fl = FailureLog(pool, keep=max(1, keep))
    app[FAILURES] = fl
    app.on_cleanup.append(fl.close)
