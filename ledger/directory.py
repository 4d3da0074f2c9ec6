"""The directory: SCIM Users and Groups as event-sourced resources (streams `user-<id>`, `group-<id>`).

One HTTP request = one command = one atomic append. Deciders are pure: they see the resources
loaded under the tenant lock (`DirectoryHandler.load`, set-based) plus the effects of earlier
commands of the same batch (`evolve`), so userName uniqueness and If-Match are decided exactly.
The inline projection (`projections.directory`) writes the final state of every touched resource
in the same transaction (read-your-writes).

Events carry the resulting changes, never the raw HTTP body; personal attributes travel in the
`personal_*` fields, sealed per user (subject = user id), so erasing a user keeps the chain valid.
Group membership is carried by MembersAdded/MembersRemoved with ids only (ids are not personal).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from projections.directory import load_state, write_state   # also registers the eraser

from .events import Event, NewEvent, event
from .executor import Command, CommandRejected, Decision, Handler
from .scim.patch import apply_group_member_patch, apply_patch
from .scim.resource import ScimError, normalize
from .scim.schema import ENTERPRISE_USER_URN, ResourceSchema, default_group_schema, default_user_schema
from .store import StreamChange

log = logging.getLogger(__name__)

USER_RS = default_user_schema()
GROUP_RS = default_group_schema()

# Attributes that identify or describe a person: sealed in events, cleared on erasure.
PERSONAL_USER_ATTRS = frozenset({
    "userName", "name", "displayName", "nickName", "profileUrl", "title", "emails", "phoneNumbers",
    "ims", "photos", "addresses", "x509Certificates", "externalId",
})
PERSONAL_EXT_ATTRS = {ENTERPRISE_USER_URN: frozenset({"employeeNumber"})}


# ---- events ---------------------------------------------------------------------------------

class _UserEvent(Event):
    user_id: str
    subject_field: ClassVar[str] = "user_id"


@event("UserCreated")
class UserCreated(_UserEvent):
    attributes: dict[str, Any] = {}                    # the non-personal attributes
    personal_attributes: dict[str, Any] | None = None
    personal = frozenset({"personal_attributes"})


@event("UserReplaced")
class UserReplaced(_UserEvent):
    """PUT: the attributes whose value changed (new values) and those that became unassigned."""
    changed: dict[str, Any] = {}
    personal_changed: dict[str, Any] | None = None
    removed: list[str] = []
    personal = frozenset({"personal_changed"})


@event("UserPatched")
class UserPatched(_UserEvent):
    changed: dict[str, Any] = {}
    personal_changed: dict[str, Any] | None = None
    removed: list[str] = []
    personal = frozenset({"personal_changed"})


@event("UserDeactivated")
class UserDeactivated(_UserEvent):
    pass


@event("UserReactivated")
class UserReactivated(_UserEvent):
    pass


@event("UserDeleted")
class UserDeleted(_UserEvent):
    pass


@event("GroupCreated")
class GroupCreated(Event):
    group_id: str
    display_name: str
    attributes: dict[str, Any] = {}


@event("GroupRenamed")
class GroupRenamed(Event):
    group_id: str
    display_name: str


@event("GroupPatched")
class GroupPatched(Event):
    group_id: str
    changed: dict[str, Any] = {}
    removed: list[str] = []


@event("MembersAdded")
class MembersAdded(Event):
    group_id: str
    members: list[str]


@event("MembersRemoved")
class MembersRemoved(Event):
    group_id: str
    members: list[str]
    reason: str | None = None          # "deleted": the member itself was deleted


@event("GroupDeleted")
class GroupDeleted(Event):
    group_id: str


# ---- state ----------------------------------------------------------------------------------

@dataclass
class Res:
    type: str                 # "User" | "Group"
    doc: dict                 # canonical SCIM document without id/meta (groups: without members)
    version: int
    created_at: str | None = None   # ISO time; None for resources created in this batch
    created: bool = False     # created in this batch
    deleted: bool = False
    erased: bool = False


@dataclass
class Reads:
    """What a batch's commands need loaded (each command adds to it)."""
    ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)            # casefolded userNames
    memberships_of: set[str] = field(default_factory=set)   # member ids whose groups to load
    probes: set[tuple[str, str]] = field(default_factory=set)   # (group, member) pairs
    full_groups: set[str] = field(default_factory=set)      # groups whose members to load


@dataclass
class DirState:
    res: dict[str, Res | None] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)        # casefolded userName -> user id
    members: dict[str, set[str]] = field(default_factory=dict)  # known (group -> members) pairs
    full: set[str] = field(default_factory=set)                 # groups whose members are all known
    groups_of: dict[str, set[str]] = field(default_factory=dict)
    # for the projection: touched resources in order; net membership changes
    touched: dict[str, None] = field(default_factory=dict)
    mchanges: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> type or None
    stamps: list[dict] = field(default_factory=list)            # results to stamp with times
    licences: Any = None      # ledger.licence_effects.LicenceEffects when the tenant has pools

    def live(self, rid: str, type_: str) -> Res:
        r = self.res.get(rid)
        if r is None or r.deleted or r.type != type_:
            raise CommandRejected("notFound", f"{type_} {rid} not found", status=404)
        return r

    def is_member(self, gid: str, mid: str) -> bool:
        return mid in self.members.get(gid, ())


@dataclass
class DirDecision(Decision):
    effects: list[tuple] = field(default_factory=list)


# ---- helpers --------------------------------------------------------------------------------

def _rejected(e: ScimError) -> CommandRejected:
    return CommandRejected(e.scim_type or "", e.detail, status=e.status)


def _event_safe(v: Any) -> Any:
    """Event payloads carry no floats (canonical encoding): decimals travel as strings."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return {k: _event_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_event_safe(x) for x in v]
    return v


def split_personal(doc: dict) -> tuple[dict, dict]:
    """(public, personal) parts of a (partial) user document."""
    public: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    for k, v in doc.items():
        if k in PERSONAL_USER_ATTRS:
            personal[k] = v
        elif k in PERSONAL_EXT_ATTRS and isinstance(v, dict):
            names = PERSONAL_EXT_ATTRS[k]
            pub = {a: x for a, x in v.items() if a not in names}
            priv = {a: x for a, x in v.items() if a in names}
            if pub:
                public[k] = pub
            if priv:
                personal[k] = priv
        else:
            public[k] = v
    return _event_safe(public), _event_safe(personal)


def _diff(old: dict, new: dict, skip: frozenset = frozenset({"schemas"})) -> tuple[dict, list[str]]:
    """Top-level attributes whose value changed (new value) and those no longer assigned.
    Extension objects are compared attribute by attribute ("urn:...:attr" in `removed`)."""
    changed: dict[str, Any] = {}
    removed: list[str] = []
    for k, v in new.items():
        if k in skip:
            continue
        o = old.get(k)
        if ":" in k and isinstance(v, dict):
            o = o if isinstance(o, dict) else {}
            sub = {a: x for a, x in v.items() if o.get(a) != x}
            if sub:
                changed[k] = sub
            removed.extend(f"{k}:{a}" for a in o if a not in v)
        elif o != v:
            changed[k] = v
    for k, o in old.items():
        if k in skip or k in new:
            continue
        if ":" in k and isinstance(o, dict):
            removed.extend(f"{k}:{a}" for a in o)
        else:
            removed.append(k)
    return changed, removed


def _fold_name(doc: dict) -> str | None:
    n = doc.get("userName")
    return n.casefold() if isinstance(n, str) else None


def _check_if_match(r: Res, if_match: str | None) -> None:
    """If-Match: "*" or a list of (weak or strong) ETags; our ETag is W/"<version>"."""
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    if "*" in tags:
        return
    for t in tags:
        if t.startswith("W/"):
            t = t[2:]
        if t.strip('"') == str(r.version):
            return
    raise CommandRejected("", f"version mismatch: the resource is at W/\"{r.version}\"", status=412)


def _active(doc: dict) -> bool:
    # an unassigned `active` counts as active (IdPs deprovision with an explicit false)
    return doc.get("active") is not False


class _Probe:
    """A member-id set that answers `in` with a fixed value and records iteration: running the
    group-member PATCH engine against it tells which ids a PATCH names, and whether it needs the
    whole member list (a full replace, a non-`value eq` filter)."""

    def __init__(self, answer: bool):
        self.answer = answer
        self.iterated = False

    def __contains__(self, x) -> bool:
        return self.answer

    def __iter__(self):
        self.iterated = True
        return iter(())


def member_patch_reads(operations: Any, rs: ResourceSchema) -> tuple[set[str], bool]:
    """(member ids a Group PATCH names, whether it needs the full member list)."""
    ids: set[str] = set()
    full = False
    for answer in (False, True):
        p = _Probe(answer)
        try:
            added, removed, _ = apply_group_member_patch(p, operations, rs)
        except ScimError:
            return set(), False
        ids.update(added)
        ids.update(removed)
        full = full or p.iterated
    return ids, full


def _member_value_ids(members: Any) -> list[str]:
    return [m["value"] for m in members or () if isinstance(m, dict) and isinstance(m.get("value"), str)]


# ---- commands -------------------------------------------------------------------------------

class _DirCommand(Command):
    def reads(self, r: Reads) -> None:
        raise NotImplementedError

    def decide(self, st: DirState) -> DirDecision:
        raise NotImplementedError


@dataclass
class CreateUser(_DirCommand):
    id: str
    doc: dict                      # normalized (resource.normalize) by the caller
    rs: ResourceSchema = USER_RS

    def reads(self, r: Reads) -> None:
        n = _fold_name(self.doc)
        if n is not None:
            r.names.add(n)

    def decide(self, st: DirState) -> DirDecision:
        n = _fold_name(self.doc)
        if n is not None and n in st.names:
            raise CommandRejected("uniqueness", "userName is already taken", status=409)
        public, personal = split_personal(self.doc)
        ev = UserCreated(user_id=self.id, attributes=public, personal_attributes=personal or None)
        result = {"id": self.id, "version": 1, "created": None, "lastModified": None}
        return DirDecision([StreamChange(f"user-{self.id}", 0, [NewEvent(ev)])], result,
                           effects=[("put", self.id, Res("User", self.doc, 1, created=True)),
                                    ("stamp", result)])


def _keep_schemas_order(old: dict, new: dict) -> None:
    """A new document listing the same `schemas` as the old one keeps the old order (a set, RFC 7643
    §3): then `schemas` changes only with an extension's attributes, so always in an update event
    that carries it (see `_with_schemas`) and a rebuild can reproduce the stored document."""
    s_old, s_new = old.get("schemas"), new.get("schemas")
    if s_old != s_new and isinstance(s_old, list) and isinstance(s_new, list) and set(s_old) == set(s_new):
        new["schemas"] = list(s_old)


def _with_schemas(changed: dict, new: dict) -> dict:
    """An update event's `changed` also states the resulting `schemas` (not information the diff
    keeps: its order follows the request), so folding events gives the stored document exactly."""
    if "schemas" in new:
        changed["schemas"] = new["schemas"]
    return changed


def _user_update_events(uid: str, old: dict, new: dict, cls) -> list[NewEvent]:
    events: list[NewEvent] = []
    _keep_schemas_order(old, new)
    changed, removed = _diff(old, new)
    if _active(old) != _active(new):
        events.append(NewEvent((UserReactivated if _active(new) else UserDeactivated)(user_id=uid)))
        # the status event states an explicit true/false; an unassigned `active` (which counts
        # as active) stays in `removed`, and unassigned <-> true changes stay in `changed`
        if isinstance(new.get("active"), bool):
            changed.pop("active", None)
    if changed or removed:
        public, personal = split_personal(_with_schemas(changed, new))
        events.insert(0, NewEvent(cls(user_id=uid, changed=public, personal_changed=personal or None,
                                      removed=removed)))
    return events


class _UserUpdate(_DirCommand):
    id: str
    if_match: str | None
    rs: ResourceSchema
    event_cls: ClassVar[type]

    def new_doc(self, r: Res) -> dict:
        raise NotImplementedError

    def name_hint(self) -> str | None:
        return None

    def reads(self, r: Reads) -> None:
        r.ids.add(self.id)
        n = self.name_hint()
        if n is not None:
            r.names.add(n)

    def decide(self, st: DirState) -> DirDecision:
        r = st.live(self.id, "User")
        _check_if_match(r, self.if_match)
        try:
            new = self.new_doc(r)
        except ScimError as e:
            raise _rejected(e) from None
        n_old, n_new = _fold_name(r.doc), _fold_name(new)
        if n_new != n_old and n_new is not None and st.names.get(n_new, self.id) != self.id:
            raise CommandRejected("uniqueness", "userName is already taken", status=409)
        events = _user_update_events(self.id, r.doc, new, self.event_cls)
        if r.erased and any(e.event.personal and getattr(e.event, "personal_changed", None)
                            for e in events):
            raise CommandRejected("mutability", "this user's personal data was erased", status=409)
        if not events:
            return DirDecision([], {"id": self.id, "version": r.version})
        v = r.version + len(events)
        return DirDecision([StreamChange(f"user-{self.id}", r.version, events)], {"id": self.id, "version": v},
                           effects=[("put", self.id, Res("User", new, v, r.created_at, r.created,
                                                          erased=r.erased))])


@dataclass
class ReplaceUser(_UserUpdate):
    id: str
    body: dict
    if_match: str | None = None
    rs: ResourceSchema = USER_RS
    event_cls = UserReplaced

    def name_hint(self):
        n = self.body.get("userName") if isinstance(self.body, dict) else None
        return n.casefold() if isinstance(n, str) else None

    def new_doc(self, r: Res) -> dict:
        return normalize(self.body, self.rs, for_replace=True, existing=r.doc)


@dataclass
class PatchUser(_UserUpdate):
    id: str
    operations: list
    if_match: str | None = None
    rs: ResourceSchema = USER_RS
    event_cls = UserPatched

    def name_hint(self):
        # the new userName, if a PATCH sets one (path "userName" or a no-path value object);
        # the unique index still guards any form this misses
        for op in self.operations if isinstance(self.operations, list) else ():
            if not isinstance(op, dict):
                continue
            low = {str(k).lower(): v for k, v in op.items()}
            path, value = low.get("path"), low.get("value")
            if isinstance(path, str) and path.lower().rsplit(":", 1)[-1] == "username" \
                    and isinstance(value, str):
                return value.casefold()
            if path is None and isinstance(value, dict):
                for k, v in value.items():
                    if str(k).lower().rsplit(":", 1)[-1] == "username" and isinstance(v, str):
                        return v.casefold()
        return None

    def new_doc(self, r: Res) -> dict:
        new, _ = apply_patch(r.doc, self.operations, self.rs)
        return new


def _removal_from_groups(st: DirState, mid: str) -> tuple[list[StreamChange], list[tuple]]:
    """MembersRemoved on every group `mid` belongs to (its deletion, in the same append)."""
    changes, effects = [], []
    for gid in sorted(st.groups_of.get(mid, ())):
        g = st.res.get(gid)
        if g is None or g.deleted:
            continue
        ev = MembersRemoved(group_id=gid, members=[mid], reason="deleted")
        changes.append(StreamChange(f"group-{gid}", g.version, [NewEvent(ev)]))
        effects.append(("bump", gid, 1))
        effects.append(("rem", gid, mid))
    return changes, effects


@dataclass
class DeleteUser(_DirCommand):
    id: str
    if_match: str | None = None

    def reads(self, r: Reads) -> None:
        r.ids.add(self.id)
        r.memberships_of.add(self.id)

    def decide(self, st: DirState) -> DirDecision:
        r = st.live(self.id, "User")
        _check_if_match(r, self.if_match)
        changes, effects = _removal_from_groups(st, self.id)
        changes.insert(0, StreamChange(f"user-{self.id}", r.version,
                                       [NewEvent(UserDeleted(user_id=self.id))]))
        return DirDecision(changes, {"id": self.id}, effects=[("delete", self.id)] + effects)


def _check_members(st: DirState, gid: str, ids: list[str]) -> list[tuple]:
    """Effects adding `ids` to group `gid`; each must be an existing user or group."""
    effects = []
    for mid in ids:
        m = st.res.get(mid)
        if m is None or m.deleted:
            raise CommandRejected("invalidValue", f"member {mid!r} is not a user or group of this tenant",
                                  status=400)
        effects.append(("add", gid, mid, m.type))
    return effects


@dataclass
class CreateGroup(_DirCommand):
    id: str
    doc: dict                      # normalized, including `members`
    rs: ResourceSchema = GROUP_RS

    def reads(self, r: Reads) -> None:
        r.ids.update(_member_value_ids(self.doc.get("members")))

    def decide(self, st: DirState) -> DirDecision:
        doc = dict(self.doc)
        ids = _member_value_ids(doc.pop("members", None))
        effects = _check_members(st, self.id, ids)
        # `schemas` only when the group has extensions: the core URN alone is implied
        attrs = {k: v for k, v in doc.items() if k != "displayName"
                 and (k != "schemas" or len(v) > 1)}
        events = [NewEvent(GroupCreated(group_id=self.id, display_name=doc["displayName"],
                                        attributes=_event_safe(attrs)))]
        if ids:
            events.append(NewEvent(MembersAdded(group_id=self.id, members=ids)))
        return DirDecision([StreamChange(f"group-{self.id}", 0, events)], {"id": self.id},
                           effects=[("put", self.id, Res("Group", doc, len(events), created=True))]
                           + effects)


def _group_events(gid: str, old: dict, new: dict, added: list[str], removed: list[str]) -> list[NewEvent]:
    events: list[NewEvent] = []
    _keep_schemas_order(old, new)
    changed, unset = _diff(old, new)
    name = changed.pop("displayName", None)
    if name is not None:
        events.append(NewEvent(GroupRenamed(group_id=gid, display_name=name)))
    if changed or unset:
        events.append(NewEvent(GroupPatched(group_id=gid, changed=_event_safe(_with_schemas(changed, new)),
                                            removed=unset)))
    if removed:
        events.append(NewEvent(MembersRemoved(group_id=gid, members=removed)))
    if added:
        events.append(NewEvent(MembersAdded(group_id=gid, members=added)))
    return events


class _GroupUpdate(_DirCommand):
    id: str
    if_match: str | None

    def changes(self, st: DirState, g: Res) -> tuple[dict, list[str], list[str]]:
        raise NotImplementedError

    def decide(self, st: DirState) -> DirDecision:
        g = st.live(self.id, "Group")
        _check_if_match(g, self.if_match)
        try:
            new, added, removed = self.changes(st, g)
        except ScimError as e:
            raise _rejected(e) from None
        effects = _check_members(st, self.id, added)
        effects += [("rem", self.id, m) for m in removed]
        events = _group_events(self.id, g.doc, new, added, removed)
        if not events:
            return DirDecision([], {"id": self.id, "version": g.version})
        v = g.version + len(events)
        return DirDecision([StreamChange(f"group-{self.id}", g.version, events)], {"id": self.id, "version": v},
                           effects=[("put", self.id, Res("Group", new, v, g.created_at, g.created))]
                           + effects)


@dataclass
class ReplaceGroup(_GroupUpdate):
    id: str
    body: dict
    if_match: str | None = None
    rs: ResourceSchema = GROUP_RS

    def reads(self, r: Reads) -> None:
        r.ids.add(self.id)
        r.full_groups.add(self.id)
        if isinstance(self.body, dict):
            for k, v in self.body.items():
                if isinstance(k, str) and k.lower() == "members" and isinstance(v, list):
                    r.ids.update(x.get("value") for x in v
                                 if isinstance(x, dict) and isinstance(x.get("value"), str))

    def changes(self, st, g):
        new = normalize(self.body, self.rs, for_replace=True, existing=g.doc)
        ids = _member_value_ids(new.pop("members", None))
        current = st.members.get(self.id, set())
        want = set(ids)
        added = [m for m in dict.fromkeys(ids) if m not in current]
        removed = sorted(m for m in current if m not in want)
        return new, added, removed


@dataclass
class PatchGroup(_GroupUpdate):
    id: str
    operations: list
    if_match: str | None = None
    rs: ResourceSchema = GROUP_RS

    def reads(self, r: Reads) -> None:
        r.ids.add(self.id)
        ids, full = member_patch_reads(self.operations, self.rs)
        r.ids.update(ids)
        r.probes.update((self.id, m) for m in ids)
        if full:
            r.full_groups.add(self.id)

    def changes(self, st, g):
        known = st.members.get(self.id, set())
        added, removed, other = apply_group_member_patch(known, self.operations, self.rs)
        new = g.doc
        if other:
            new, _ = apply_patch(g.doc, other, self.rs)
        return new, added, removed


@dataclass
class DeleteGroup(_DirCommand):
    id: str
    if_match: str | None = None

    def reads(self, r: Reads) -> None:
        r.ids.add(self.id)
        r.memberships_of.add(self.id)    # nested: a group may be a member of other groups

    def decide(self, st: DirState) -> DirDecision:
        g = st.live(self.id, "Group")
        _check_if_match(g, self.if_match)
        changes, effects = _removal_from_groups(st, self.id)
        changes.insert(0, StreamChange(f"group-{self.id}", g.version,
                                       [NewEvent(GroupDeleted(group_id=self.id))]))
        return DirDecision(changes, {"id": self.id}, effects=[("delete", self.id)] + effects)


# ---- handler --------------------------------------------------------------------------------

class DirectoryHandler(Handler):
    def streams(self, command) -> list[str]:
        # every change names its expected version (from the projection, read under the lock)
        return []

    async def load(self, conn, tenant: str, commands: list) -> DirState:
        from .directory_licences import load_licences
        reads = Reads()
        for c in commands:
            c.reads(reads)
        st = await load_state(conn, tenant, reads, DirState())
        await load_licences(conn, tenant, commands, reads, st)
        return st

    def decide(self, st: DirState, command) -> Decision:
        from .directory_licences import licence_changes
        try:
            decision = command.decide(st)
            # the seats this write moves, in the same append (licences follow the directory)
            decision.changes += licence_changes(st, decision)
            return decision
        except CommandRejected:
            raise
        except ScimError as e:
            raise _rejected(e) from None
        except Exception:  # noqa: BLE001 - a bug must fail this command alone, not its batch
            log.exception("deciding %s failed", type(command).__name__)
            raise CommandRejected("", "internal error while deciding the request", status=500) from None

    def evolve(self, st: DirState, command, decision: DirDecision) -> None:
        if st.licences is not None:
            st.licences.apply(decision.changes)
        for eff in decision.effects:
            kind = eff[0]
            if kind == "put":
                _, rid, res = eff
                old = st.res.get(rid)
                if old is not None and old.type == "User":
                    n = _fold_name(old.doc)
                    if n is not None and st.names.get(n) == rid:
                        del st.names[n]
                if res.type == "User":
                    n = _fold_name(res.doc)
                    if n is not None:
                        st.names[n] = rid
                st.res[rid] = res
                st.touched[rid] = None
                if res.created:
                    st.full.add(rid)
                    st.members.setdefault(rid, set())
            elif kind == "delete":
                _, rid = eff
                r = st.res[rid]
                assert r is not None
                r.deleted = True
                r.version += 1
                n = _fold_name(r.doc) if r.type == "User" else None
                if n is not None and st.names.get(n) == rid:
                    del st.names[n]
                st.touched[rid] = None
            elif kind == "bump":
                _, gid, n = eff
                st.res[gid].version += n
                st.touched[gid] = None
            elif kind == "add":
                _, gid, mid, mtype = eff
                st.members.setdefault(gid, set()).add(mid)
                if mid in st.groups_of:
                    st.groups_of[mid].add(gid)
                st.mchanges[(gid, mid)] = mtype
            elif kind == "rem":
                _, gid, mid = eff
                st.members.get(gid, set()).discard(mid)
                if mid in st.groups_of:
                    st.groups_of[mid].discard(gid)
                st.mchanges[(gid, mid)] = None
            elif kind == "stamp":
                st.stamps.append(eff[1])

    async def project(self, conn, tenant: str, st: DirState, recorded) -> None:
        if not recorded:
            return
        now = next((e.recorded_at for _, evs in recorded for e in evs), None)
        if now is None:
            return
        await write_state(conn, tenant, st, now)
        if st.licences is not None:
            await st.licences.save(conn, tenant)


DIRECTORY = DirectoryHandler()
for _cls in (CreateUser, ReplaceUser, PatchUser, DeleteUser, CreateGroup, ReplaceGroup, PatchGroup,
             DeleteGroup):
    _cls.handler = DIRECTORY

