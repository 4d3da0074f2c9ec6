"""SCIM /Bulk (RFC 7644 §3.7): `POST /scim/v2/{tenant}/Bulk`.

Each operation is its own atomic unit: one directory command (the same ones the single-resource
handlers of `api.scim_http` build) = one append. A failing operation fails alone; the others stay
committed.

Planning, before anything is written:
* every POST gets its resource id up front, so `"bulkId:<x>"` (in `path`, or any string in `data`:
  members, manager…) resolves to an id without waiting; dependencies only decide the *order*;
* operations are sorted into levels (Kahn): level k holds the operations whose bulkId references
  are all defined in levels < k. A level's operations are submitted to the command bus
  concurrently, in request order (the bus keeps that order and group-commits them; a batch's
  decisions see the effects of the commands before them), so a 10,000-user onboarding costs a few
  dozen transactions, not 10,000. The next level starts when the previous one is answered; an
  operation whose referenced operation failed fails with 409, without being attempted;
* an undefined bulkId → 400 invalidValue; a bulkId defined twice → 400 invalidValue for the later
  POST; operations left over by the topological sort (a circular reference, or depending on
  one) → 409 (RFC 7644 §3.7.1 allows stopping on circular references with 409).

`failOnErrors` = N: processing stops once N operations have failed, exactly as if the operations
ran one by one: while k more errors are allowed, at most k operations are in flight, so the
N-th error is always the last operation processed. Unprocessed operations are absent from the
response (RFC 7644 §3.7.3).

Limits (advertised by /ServiceProviderConfig): more than `maxOperations` operations → 413
scimType tooMany; a body over `maxPayloadSize` bytes → 413 (RFC 7644 §3.7.4). Per-operation
results: `status` (a string, as in the RFC's examples), `location`, `version` (ETag), and for
failures `response` = the SCIM error body. A rejected operation (4xx) is also kept in the
failed-request log (api/failed_requests.py) with the operation's method and path.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ledger import directory as d
from ledger.scim.resource import ScimError, normalize

from . import scim_http as sh
from .failed_requests import FAILURES
from .scim_discovery import BULK_MAX_OPERATIONS, BULK_MAX_PAYLOAD
from .scim_errors import ERROR_URN
from .scim_render import etag
from .scim_request import read_json

log = logging.getLogger(__name__)

BULK_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
BULK_PREFIX = "bulkId:"
# Commands of one bulk in flight on the bus at once: enough to fill several group-commit
# batches back to back, without queueing 10,000 commands ahead of the tenant's other requests.
IN_FLIGHT = 2048
METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Op:
    index: int
    method: str = ""
    path: str = ""
    bulk_id: str | None = None
    version: str | None = None
    data: Any = None
    kind: str | None = None          # "User" | "Group"
    target: str | None = None        # resource id or "bulkId:x" (PUT/PATCH/DELETE)
    new_id: str | None = None        # POST: the id it creates
    refs: set[str] = field(default_factory=set)
    error: ScimError | None = None   # decided while planning
    result: dict | None = None
    ok: bool = False


def _error_body(status: int, detail: str, scim_type: str | None) -> dict:
    body = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def _refs(v: Any, out: set[str]) -> None:
    if isinstance(v, str):
        if v.startswith(BULK_PREFIX):
            out.add(v[len(BULK_PREFIX):])
    elif isinstance(v, dict):
        for x in v.values():
            _refs(x, out)
    elif isinstance(v, list):
        for x in v:
            _refs(x, out)


def _resolve(v: Any, ids: dict[str, str]) -> Any:
    if isinstance(v, str):
        if v.startswith(BULK_PREFIX):
            return ids.get(v[len(BULK_PREFIX):], v)
        return v
    if isinstance(v, dict):
        return {k: _resolve(x, ids) for k, x in v.items()}
    if isinstance(v, list):
        return [_resolve(x, ids) for x in v]
    return v


def _parse_op(i: int, raw: Any) -> Op:
    op = Op(i)
    if not isinstance(raw, dict):
        op.error = ScimError(400, "invalidSyntax", f"Operations[{i}] must be an object")
        return op
    low = {k.lower(): v for k, v in raw.items() if isinstance(k, str)}
    method, path = low.get("method"), low.get("path")
    bulk_id, version = low.get("bulkid"), low.get("version")
    op.method = method.upper() if isinstance(method, str) else ""
    op.path = path if isinstance(path, str) else ""
    op.bulk_id = bulk_id if isinstance(bulk_id, str) and bulk_id else None
    op.version = version if isinstance(version, str) and version else None
    op.data = low.get("data")
    if op.method not in METHODS:
        op.error = ScimError(400, "invalidSyntax",
                             f"Operations[{i}]: method must be POST, PUT, PATCH or DELETE")
        return op
    parts = [p for p in op.path.split("/") if p]
    kinds = {k.lower(): v for k, v in sh.KINDS.items()}
    if not parts or parts[0].lower() not in kinds or len(parts) > 2:
        op.error = ScimError(400, "invalidValue",
                             f"Operations[{i}]: path must be /Users, /Groups or /<type>/<id>")
        return op
    op.kind = kinds[parts[0].lower()]
    if op.method == "POST":
        if len(parts) != 1:
            op.error = ScimError(400, "invalidValue", f"Operations[{i}]: POST takes /Users or /Groups")
        elif op.bulk_id is None:
            op.error = ScimError(400, "invalidValue", f"Operations[{i}]: POST needs a bulkId")
        elif not isinstance(op.data, dict):
            op.error = ScimError(400, "invalidSyntax", f"Operations[{i}]: data must be a JSON object")
        else:
            op.new_id = str(uuid.uuid4())
    else:
        if len(parts) != 2:
            op.error = ScimError(400, "invalidValue", f"Operations[{i}]: {op.method} needs /<type>/<id>")
            return op
        op.target = parts[1]
        if op.method != "DELETE" and not isinstance(op.data, dict):
            op.error = ScimError(400, "invalidSyntax", f"Operations[{i}]: data must be a JSON object")
            return op
    if op.error is None:
        _refs(op.target, op.refs)
        _refs(op.data, op.refs)
    return op


def plan(ops: list[Op]) -> tuple[list[list[Op]], list[Op]]:
    """(levels of operations in dependency order, operations in or behind a cycle).
    Operations with a planning error land in level 0 (they fail when processed)."""
    defined: dict[str, Op] = {}
    for op in ops:
        if op.error is None and op.bulk_id is not None and op.method == "POST":
            if op.bulk_id in defined:
                op.error = ScimError(400, "invalidValue", f"bulkId {op.bulk_id!r} is used twice")
            else:
                defined[op.bulk_id] = op
    for op in ops:
        if op.error is None:
            unknown = sorted(r for r in op.refs if r not in defined)
            if unknown:
                op.error = ScimError(400, "invalidValue",
                                     f"bulkId {unknown[0]!r} is not defined by a POST of this request")
            elif op.bulk_id in op.refs and op.method == "POST":
                op.error = ScimError(409, None, f"bulkId {op.bulk_id!r} references itself")
    pending = {op.index: op for op in ops}
    depth: dict[int, int] = {}
    levels: list[list[Op]] = []
    while True:
        ready = [op for op in pending.values()
                 if op.error is not None or all(defined[r].index in depth for r in op.refs)]
        if not ready:
            break
        for op in ready:
            lvl = 0 if op.error is not None else max(
                (depth[defined[r].index] + 1 for r in op.refs), default=0)
            depth[op.index] = lvl
            del pending[op.index]
            while len(levels) <= lvl:
                levels.append([])
            levels[lvl].append(op)
    for lvl in levels:
        lvl.sort(key=lambda o: o.index)
    cyclic = sorted(pending.values(), key=lambda o: o.index)
    for op in cyclic:
        op.error = ScimError(409, None, "circular bulkId reference: the operation references "
                                        "(directly or not) a resource that references it back")
    return levels, cyclic


class Bulk:
    def __init__(self, request: web.Request, ops: list[Op], fail_on_errors: int | None):
        self.request = request
        self.ops = ops
        self.fail_on_errors = fail_on_errors
        self.errors = 0
        self.ids = {op.bulk_id: op.new_id for op in ops if op.new_id and op.bulk_id}
        self.by_bulk_id = {op.bulk_id: op for op in ops if op.new_id and op.bulk_id}
        self.base = sh.base_url(request)
        self.rss = sh.schemas_for(request.match_info["tenant"])

    def stopped(self) -> bool:
        return self.fail_on_errors is not None and self.errors >= self.fail_on_errors

    def _location(self, kind: str, rid: str) -> str:
        return f"{self.base}/{'Users' if kind == 'User' else 'Groups'}/{rid}"

    def _command(self, op: Op):
        rs = self.rss[op.kind]
        data = _resolve(op.data, self.ids) if op.refs else op.data
        if op.method == "POST":
            doc = normalize(data, rs)
            return (d.CreateUser if op.kind == "User" else d.CreateGroup)(op.new_id, doc, rs)
        rid = self.ids.get(op.target[len(BULK_PREFIX):]) if op.target.startswith(BULK_PREFIX) else op.target
        op.target = rid
        if op.method == "PUT":
            return (d.ReplaceUser if op.kind == "User" else d.ReplaceGroup)(rid, data, op.version, rs)
        if op.method == "PATCH":
            return (d.PatchUser if op.kind == "User" else d.PatchGroup)(
                rid, sh._operations(data), op.version, rs)
        return (d.DeleteUser if op.kind == "User" else d.DeleteGroup)(rid, op.version)

    def _fail(self, op: Op, e: ScimError) -> None:
        self.errors += 1
        if 400 <= e.status < 500 and FAILURES in self.request.app:
            # the failed-request log shows a rejected operation like a rejected request
            self.request.app[FAILURES].record(
                self.request.match_info["tenant"], op.method or "?",
                f"/scim/v2/{self.request.match_info['tenant']}/{op.path.lstrip('/')}", e.status,
                e.scim_type, f"bulk operation {op.index}: {e.detail}", self.request["request_id"])
        op.result = self._head(op)
        op.result["status"] = str(e.status)
        op.result["response"] = _error_body(e.status, e.detail, e.scim_type)

    @staticmethod
    def _head(op: Op) -> dict:
        out: dict[str, Any] = {"method": op.method or None}
        if op.bulk_id:
            out["bulkId"] = op.bulk_id
        return out

    async def _run(self, op: Op) -> None:
        """One operation; never raises (its outcome lands in op.result)."""
        if op.error is not None:
            self._fail(op, op.error)
            return
        failed = [r for r in sorted(op.refs) if not self.by_bulk_id[r].ok]
        if failed:
            self._fail(op, ScimError(409, None, f"the operation with bulkId {failed[0]!r}, "
                                                "which this one references, failed"))
            return
        try:
            cmd = self._command(op)
            res = await sh.execute(self.request, cmd)
        except ScimError as e:
            self._fail(op, e)
            return
        except Exception:  # noqa: BLE001 - one operation's failure must not fail the others
            log.exception("bulk operation %d failed (request %s)", op.index, self.request["request_id"])
            self._fail(op, ScimError(500, None, f"internal error (request {self.request['request_id']})"))
            return
        op.ok = True
        out = self._head(op)
        rid = op.new_id or op.target
        if op.method == "POST":
            out["status"] = "201"
            version = res.get("version") if isinstance(res, dict) else None
            if version is None:    # CreateGroup: GroupCreated, plus MembersAdded when it has members
                version = 2 if cmd.doc.get("members") else 1
        elif op.method == "DELETE":
            out["status"] = "204"
            version = None
        else:
            out["status"] = "200"
            version = res.get("version") if isinstance(res, dict) else None
        if op.method != "DELETE":
            out["location"] = self._location(op.kind, rid)
        if version is not None:
            out["version"] = etag(version)
        op.result = out

    async def _run_many(self, ops: list[Op]) -> None:
        """Operations of one level, concurrently and in order, within the failOnErrors budget."""
        # A sliding window, submitted in request order (task creation order = the order the bus
        # queues them). With failOnErrors, errors + in flight ≤ failOnErrors at all times, so when
        # the limit is reached nothing is in flight, and the bus answers in submission order:
        # the last operation processed is the failing one, as if they ran one by one.
        pending: set[asyncio.Task] = set()
        i = 0
        try:
            while True:
                while i < len(ops) and not self.stopped() and len(pending) < self._room():
                    pending.add(asyncio.ensure_future(self._run(ops[i])))
                    i += 1
                if not pending:
                    return
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if pending:       # the client went away: let the submitted ones finish on their own
                for t in pending:
                    t.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _room(self) -> int:
        if self.fail_on_errors is None:
            return IN_FLIGHT
        return min(IN_FLIGHT, self.fail_on_errors - self.errors)

    async def run(self, levels: list[list[Op]], cyclic: list[Op]) -> list[dict]:
        for lvl in levels:
            await self._run_many(lvl)
            if self.stopped():
                break
        if not self.stopped():
            await self._run_many(cyclic)
        return [op.result for op in self.ops if op.result is not None]


async def _read_body(request: web.Request) -> Any:
    length = request.content_length
    if length is not None and length > BULK_MAX_PAYLOAD:
        raise ScimError(413, None, f"The size of the bulk operation exceeds the maxPayloadSize "
                                   f"({BULK_MAX_PAYLOAD}).")
    try:
        return await read_json(request.clone(client_max_size=BULK_MAX_PAYLOAD))
    except ScimError as e:
        if e.status == 413:
            raise ScimError(413, None, f"The size of the bulk operation exceeds the maxPayloadSize "
                                       f"({BULK_MAX_PAYLOAD}).") from None
        raise


@sh.scim_handler
async def bulk(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    if not isinstance(body, dict):
        raise ScimError(400, "invalidSyntax", "a BulkRequest must be a JSON object")
    low = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    schemas = low.get("schemas")
    if schemas is not None and not (isinstance(schemas, list) and BULK_REQUEST_URN in schemas):
        raise ScimError(400, "invalidSyntax", f"a BulkRequest's schemas must list {BULK_REQUEST_URN}")
    raw_ops = low.get("operations")
    if not isinstance(raw_ops, list):
        raise ScimError(400, "invalidSyntax", "a BulkRequest needs an Operations array")
    if len(raw_ops) > BULK_MAX_OPERATIONS:
        raise ScimError(413, "tooMany", f"The number of operations ({len(raw_ops)}) exceeds "
                                        f"maxOperations ({BULK_MAX_OPERATIONS}).")
    foe = low.get("failonerrors")
    if foe is not None and (isinstance(foe, bool) or not isinstance(foe, int) or foe < 1):
        raise ScimError(400, "invalidValue", "failOnErrors must be a positive integer")
    ops = [_parse_op(i, raw) for i, raw in enumerate(raw_ops)]
    levels, cyclic = plan(ops)
    results = await Bulk(request, ops, foe).run(levels, cyclic)
    return sh.respond({"schemas": [BULK_RESPONSE_URN], "Operations": results})


def setup(app: web.Application) -> None:
    app.router.add_post("/scim/v2/{tenant}/Bulk", bulk)
