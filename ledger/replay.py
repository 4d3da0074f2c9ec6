"""The replay engine: the history questions answered from the raw events, deliberately naively.

It reads a tenant's events up to `knownAt` (a tenant sequence number or a recorded time), decodes and
validates every one, and folds them through `ledger.licences.evolve` - the function the write side
uses - in effective-time order (ties by sequence), stopping at the instant asked about. It shares no
query code with the temporal projection (projections/temporal.py); the two answering the same
questions identically is what the hypothesis tests check.

Semantics shared by both paths (they are the ledger's, not an implementation's):
* A pool's terms fold all its known pool events in sequence order (`Terms` applies their effective
  instants itself); its seats fold the seat events effective at or before T, in effective order.
* A seat event that cannot apply at its place in effective order (a grants change, a suspension or a
  resumption of a seat that a correction ended earlier) changes nothing.
* Holders are seats active or suspended (a suspended seat is still held and billed); waiting users
  are counted apart. Rows are (user, pool), ordered by user then pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .events import Event, decode
from .licences import (PoolCreated, PoolState, SEAT_EVENTS, SeatGrantsChanged, SeatResumed, SeatSuspended,
                       evolve)

Known = int | datetime | None
HELD = ("active", "suspended")


@dataclass
class Raw:
    seq: int
    stream: str
    type: str
    effective_at: datetime
    recorded_at: datetime
    event: Event


async def read_events(conn, tenant: str, known: Known = None, stream_prefix: str = "pool-") -> list[Raw]:
    """Every event of the tenant on streams starting with `stream_prefix`, known at `known`."""
    cond, arg = ("seq <= $3", known) if isinstance(known, int) else \
        ("recorded_at <= $3", known) if isinstance(known, datetime) else ("$3::bigint IS NULL", None)
    rows = await conn.fetch(
        "SELECT seq, stream, type, schema_version, data::text AS data, effective_at, recorded_at FROM events "
        f"WHERE tenant_id = $1 AND starts_with(stream, $2) AND {cond} ORDER BY seq", tenant, stream_prefix, arg)
    return [Raw(r["seq"], r["stream"], r["type"], r["effective_at"], r["recorded_at"],
                decode(r["type"], r["schema_version"], orjson.loads(r["data"]))) for r in rows]


def _applies(state: PoolState, ev: Event) -> bool:
    if isinstance(ev, (SeatGrantsChanged, SeatSuspended, SeatResumed)):
        return ev.user_id in state.seats
    return True


def _seat_dict(pid: str, product: str, s) -> dict:
    return {"user_id": s.user_id, "pool_id": pid, "product_id": product, "state": s.state,
            "grants": sorted(s.grants), "priority": s.priority, "overage": s.overage,
            "suspended_until": s.suspended_until.isoformat() if s.suspended_until else None}


CORRECTIONS = ("SeatEndCorrected", "SeatStartCorrected")


def _is_seat(e: Raw) -> bool:
    return isinstance(e.event, SEAT_EVENTS) or e.type in CORRECTIONS


class LicenceReplay:
    def __init__(self, events: list[Raw]):
        self.pool_events = [e for e in events if not _is_seat(e)]
        self.seat_events = sorted((e for e in events if _is_seat(e)), key=lambda e: (e.effective_at, e.seq))
        # the assignments a corrected start refers to: (pool stream, user, effective instant)
        self.assigned = {(e.stream, e.event.user_id, e.effective_at): e.event for e in events
                         if e.type == "SeatAssigned"}

    def _seat_event(self, e: Raw) -> Event | None:
        """A correction read as what it says in effective time: a corrected end releases the seat then;
        a corrected start assigns then the holding that began at previous_start."""
        from .licences import SeatAssigned, SeatReleased
        ev = e.event
        if e.type == "SeatEndCorrected":
            return SeatReleased(pool_id=ev.pool_id, user_id=ev.user_id, reason=ev.reason or "correction")
        if e.type == "SeatStartCorrected":
            a = self.assigned.get((e.stream, ev.user_id, ev.previous_start))
            return None if a is None else a
        return ev

    def pools_at(self, at: datetime) -> dict[str, PoolState]:
        pools: dict[str, PoolState] = {}
        for e in self.pool_events:
            pid = e.stream[5:]
            if isinstance(e.event, PoolCreated) or pid in pools:
                pools[pid] = evolve(pools.get(pid), e.event, e.effective_at)
        for e in self.seat_events:
            if e.effective_at > at:
                break
            st = pools.get(e.stream[5:])
            ev = self._seat_event(e)
            if st is not None and ev is not None and _applies(st, ev):
                evolve(st, ev, e.effective_at)
        return pools

    def holders(self, at: datetime, pool_ids: list[str] | None = None, product_id: str | None = None) -> list[dict]:
        out = []
        for pid, st in self.pools_at(at).items():
            if (pool_ids is not None and pid not in pool_ids) or \
                    (product_id is not None and st.terms.product_id != product_id):
                continue
            out += [_seat_dict(pid, st.terms.product_id, s) for s in st.seats.values() if s.state in HELD]
        return sorted(out, key=lambda d: (d["user_id"], d["pool_id"]))

    def licences(self, user_id: str, at: datetime) -> list[dict]:
        return sorted((_seat_dict(pid, st.terms.product_id, st.seats[user_id])
                       for pid, st in self.pools_at(at).items() if user_id in st.seats),
                      key=lambda d: d["pool_id"])

    def usage(self, at: datetime) -> list[dict]:
        out = []
        for pid, st in sorted(self.pools_at(at).items()):
            states = [s.state for s in st.seats.values()]
            a, s, w = states.count("active"), states.count("suspended"), states.count("waiting")
            out.append({"pool_id": pid, "product_id": st.terms.product_id, "seats": st.terms.seats_at(at),
                        "used": a + s, "active": a, "suspended": s, "waiting": w})
        return out

    def timeline(self, pool_id: str, user_id: str) -> list[tuple]:
        """(from, to, state, grants, priority, overage, suspended_until) runs of one user's seat, found
        by asking for the state at every instant an event of the pair takes effect (merged runs)."""
        mine = [e for e in self.seat_events if e.stream == f"pool-{pool_id}" and e.event.user_id == user_id]
        instants = sorted({e.effective_at for e in mine})
        runs: list[list] = []
        current = None
        for t in instants:
            st = self.pools_at(t).get(pool_id)
            s = st.seats.get(user_id) if st else None
            key = None if s is None else (s.state, tuple(sorted(s.grants)), s.priority, s.overage, s.suspended_until)
            if key == current:
                continue
            if current is not None:
                runs[-1][1] = t
            if key is not None:
                runs.append([t, None, key])
            current = key
        return [(f, to, *k) for f, to, k in runs]


async def licence_replay(conn, tenant: str, known: Known = None) -> LicenceReplay:
    return LicenceReplay(await read_events(conn, tenant, known))


# ---- the directory as it was ----------------------------------------------------------------------

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _merge(doc: dict, changed: dict | None) -> None:
    for k, v in (changed or {}).items():
        if ":" in k and isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v


def _remove(doc: dict, removed: list[str]) -> None:
    for path in removed:
        if path in doc:
            doc.pop(path)
            continue
        urn, _, attr = path.rpartition(":")
        ext = doc.get(urn)
        if isinstance(ext, dict):
            ext.pop(attr, None)
            if not ext:
                doc.pop(urn)


def _known(e, known: Known) -> bool:
    if isinstance(known, int):
        return e.seq <= known
    if isinstance(known, datetime):
        return e.recorded_at <= known
    return True


@dataclass
class AsOf:
    status: str               # "ok" | "deleted" | "absent"
    doc: dict | None = None
    deleted_at: datetime | None = None


async def resource_at(store, tenant: str, kind: str, rid: str, at: datetime, known: Known = None) -> AsOf:
    """A User or Group as it was at `at`, as known at `known`, from its own stream (decrypted where the
    subject's key still exists; an erased subject reads `"erased": true` without personal fields)."""
    stream = ("user-" if kind == "User" else "group-") + rid
    events = [e for e in await store.read_stream(tenant, stream, 0, 1_000_000)
              if _known(e, known) and e.effective_at <= at]
    doc: dict[str, Any] | None = None
    created = modified = None
    version = 0
    erased = False
    members: set[str] = set()
    for e in events:
        ev = e.decoded()
        t = type(ev).__name__
        version = e.stream_version
        modified = e.recorded_at
        erased = erased or e.erased
        if t == "UserCreated":
            doc = dict(ev.attributes)
            _merge(doc, ev.personal_attributes)
            created = e.recorded_at
        elif t in ("UserReplaced", "UserPatched") and doc is not None:
            _merge(doc, ev.changed)
            _merge(doc, ev.personal_changed)
            _remove(doc, ev.removed)
        elif t == "UserDeactivated" and doc is not None:
            doc["active"] = False
        elif t == "UserReactivated" and doc is not None:
            doc["active"] = True
        elif t == "GroupCreated":
            doc = {"schemas": [GROUP_URN], **ev.attributes, "displayName": ev.display_name}
            created = e.recorded_at
        elif t == "GroupRenamed" and doc is not None:
            doc["displayName"] = ev.display_name
        elif t == "GroupPatched" and doc is not None:
            _merge(doc, ev.changed)
            _remove(doc, ev.removed)
        elif t == "MembersAdded":
            members.update(ev.members)
        elif t == "MembersRemoved":
            members.difference_update(ev.members)
        elif t in ("UserDeleted", "GroupDeleted"):
            return AsOf("deleted", deleted_at=e.effective_at)
    if doc is None:
        return AsOf("absent")
    if kind == "User" and not erased:
        async with store.pool.acquire() as conn:
            erased = bool(await conn.fetchval("SELECT 1 FROM erasures WHERE tenant_id = $1 AND subject = $2",
                                              tenant, rid))
    doc.setdefault("schemas", [USER_URN] if kind == "User" else [GROUP_URN])
    if kind == "Group":
        doc["members"] = [{"value": m} for m in sorted(members)]
    if erased:
        from .directory import PERSONAL_EXT_ATTRS, PERSONAL_USER_ATTRS
        for a in PERSONAL_USER_ATTRS:
            doc.pop(a, None)
        for urn, names in PERSONAL_EXT_ATTRS.items():
            if isinstance(doc.get(urn), dict):
                for a in names:
                    doc[urn].pop(a, None)
        doc["erased"] = True
    doc["id"] = rid
    doc["meta"] = {"resourceType": kind, "created": created.isoformat(), "lastModified": modified.isoformat(),
                   "version": f'W/"{version}"'}
    return AsOf("ok", doc)
