"""The directory projection (`scim_resources`, `group_members`, `scim_extensions`) folded from events.

The inline projection (projections/directory.py) writes the documents the deciders computed from the
requests; the events carry what changed (ledger/directory.py). Folding those changes in sequence
order gives the same rows, given what each part of a row is made of:
* the document: the created attributes, then each event's `changed` merged and `removed` unset
  (extension objects attribute by attribute, as the decider's diff makes them), personal fields
  opened from their envelope with the subject's key (`ledger.pii`); `active` from the status events,
  except that a reactivation right after an update that unset `active` leaves it unset (an unset
  `active` counts as active: the decider emits both). `id` and `meta` (created, lastModified) as
  `stored_doc` makes them; `version` is the stream version; `created` / `last_modified` the recorded
  times of the stream's first and last events (the inline projection writes every touched resource
  with its batch's recorded time, and a resource is only touched by an event on its stream).
* `schemas`: its order follows the request, so update events state it (`changed["schemas"]`,
  GroupCreated `attributes["schemas"]` when a group has extensions) since this rebuild exists; for
  older events the rule of PATCH applies (keep the order, append a new extension, drop an emptied
  one), which an older PUT listing several extensions in another order may not match - such a row is
  reported, and the rebuild rewrites it with the folded order.
* decimals: events carry no floats (`_event_safe` writes them as their repr), so the values of
  `decimal` attributes (per the tenant's schemas, built from the folded extension events) are read
  back as floats - `float(repr(x)) == x`, the same jsonb number.
* erased users (`SubjectErased`): their envelopes are unreadable, and the document is
  `projections.directory.erased_doc` of the fold, the same function the live eraser applies.
* `doc_ci` is `casefold_doc` of the document with the tenant's schemas, as `write_state` does.
* `group_members`: MembersAdded / MembersRemoved, the member's type from its stream, and no row for a
  deleted group or member (deleting one removes its rows).
* `scim_extensions`: one row per ScimExtensionRegistered (recorded time, sequence).
Stored events are trusted: the data is used as stored, no model validation.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ledger.events import _latest, upcast
from ledger.pii import ENVELOPE_KEY, open_envelope
from ledger.replay import GROUP_URN, _merge, _remove
from ledger.scim.patch import _Patcher
from ledger.scim.resource import compiled
from ledger.scim.schema import casefold_doc
from ledger.scim_extensions import _build, _defaults
from projections.directory import erased_doc, iso, stored_doc
from projections.rebuild_compare import Table
from projections.rebuild_read import Event

TABLES = (
    Table("scim_resources", ("id",), ("type", "doc", "doc_ci", "version", "created", "last_modified")),
    Table("group_members", ("group_id", "member_id"), ("member_type",)),
    Table("scim_extensions", ("schema_id",), ("resource_type", "required", "definition", "registered_at", "seq")),
)
_UPDATES = ("UserReplaced", "UserPatched")


@dataclass(slots=True)
class _Res:
    type: str
    doc: dict
    version: int
    created: datetime
    modified: datetime
    unset_active: bool = False      # the last event was an update that unset `active`


def _decimals_back(attr, value):
    if attr.type == "decimal":
        if isinstance(value, str):
            return float(value)
        if isinstance(value, list):
            return [float(v) if isinstance(v, str) else v for v in value]
        return value
    if attr.is_complex:
        def one(obj):
            if not isinstance(obj, dict):
                return obj
            return {k: (_decimals_back(s, v) if (s := attr.sub(k)) is not None else v) for k, v in obj.items()}
        return [one(v) for v in value] if isinstance(value, list) else one(value)
    return value


def _has_decimal(attrs) -> bool:
    return any(a.type == "decimal" or _has_decimal(a.sub_attributes) for a in attrs)


def decimals_back(doc: dict, rs) -> dict:
    """`doc` with the string form of every `decimal` attribute's value read back as a float."""
    out = {}
    for k, v in doc.items():
        ext = rs.extension(k) if ":" in k else None
        if ext is not None and isinstance(v, dict):
            out[k] = {ek: (_decimals_back(a, ev) if (a := ext.attribute(ek)) is not None else ev)
                      for ek, ev in v.items()}
            continue
        a = rs.common_attribute(k) or rs.schema.attribute(k)
        out[k] = _decimals_back(a, v) if a is not None else v
    return out


class DirectoryFold:
    def __init__(self, tenant: str, keys: dict[str, bytes]):
        self.tenant = tenant
        self.keys = keys                            # subject -> key (erased subjects have none)
        self.res: dict[str, _Res] = {}
        self.members: dict[str, dict[str, str]] = {}   # group -> member -> member type
        self.extensions: dict[str, tuple] = {}
        self.erased: set[str] = set()
        self._schemas = None
        self.events = 0

    def schemas(self):
        """The tenant's resource types as of the extensions folded so far."""
        if self._schemas is None:
            rows = [{"resource_type": r[0], "required": r[1], "definition": r[2]}
                    for r in sorted(self.extensions.values(), key=lambda r: r[4])]
            self._schemas = _build(rows) if rows else _defaults()
        return self._schemas

    def _schemas_rule(self, r: _Res) -> None:
        """`schemas` of an event that does not state it (older events): the rule of PATCH."""
        p = _Patcher(compiled(self.schemas()[r.type]), r.doc, False)
        p._fix_schemas()
        r.doc = p.doc

    def apply(self, e: Event, recorded: datetime) -> None:
        """One event of a user-, group-, scim-extension- or erasure- stream."""
        self.events += 1
        typ, d, sv = e.type, e.data, e.schema_version
        if sv != _latest.get(typ, sv):
            d = upcast(typ, sv, d)[1]
        env = d.pop(ENVELOPE_KEY, None)
        if env is not None:
            key = self.keys.get(env["subject"])
            if key is not None:
                d.update(open_envelope(key, self.tenant, env))
        if typ == "ScimExtensionRegistered":
            self.extensions[d["schema_id"]] = (d["resource_type"], d.get("required", False), d["definition"],
                                               recorded, e.seq)
            self._schemas = None
            return
        if typ == "SubjectErased":
            self.erased.add(d["subject"])
            return
        rid = d.get("user_id") or d.get("group_id")
        if typ == "UserCreated":
            doc = dict(d.get("attributes") or {})
            _merge(doc, d.get("personal_attributes"))
            self.res[rid] = _Res("User", doc, e.stream_version, recorded, recorded)
            return
        if typ == "GroupCreated":
            attrs = dict(d.get("attributes") or {})
            schemas = attrs.pop("schemas", None)
            r = self.res[rid] = _Res("Group", {"schemas": schemas or [GROUP_URN], **attrs,
                                               "displayName": d["display_name"]},
                                     e.stream_version, recorded, recorded)
            if schemas is None and any(":" in k for k in attrs):     # an extension, before schemas travelled
                self._schemas_rule(r)
            return
        if typ in ("UserDeleted", "GroupDeleted"):
            self.res.pop(rid, None)
            self.members.pop(rid, None)
            return
        if typ == "MembersAdded":
            ms = self.members.setdefault(rid, {})
            for m in d["members"]:
                if m not in ms:
                    mr = self.res.get(m)
                    ms[m] = mr.type if mr is not None else ("Group" if m in self.members else "User")
        elif typ == "MembersRemoved":
            ms = self.members.get(rid)
            if ms:
                for m in d["members"]:
                    ms.pop(m, None)
        r = self.res.get(rid)
        if r is None:
            return
        r.version, r.modified = e.stream_version, recorded
        unset = False
        if typ in _UPDATES or typ == "GroupPatched":
            changed = d.get("changed") or {}
            _merge(r.doc, changed)
            _merge(r.doc, d.get("personal_changed"))
            removed = d.get("removed") or ()
            _remove(r.doc, removed)
            if "schemas" not in changed:
                self._schemas_rule(r)
            unset = "active" in removed
        elif typ == "UserDeactivated":
            r.doc["active"] = False
        elif typ == "UserReactivated":
            if not r.unset_active:
                r.doc["active"] = True
        elif typ == "GroupRenamed":
            r.doc["displayName"] = d["display_name"]
        r.unset_active = unset

    # ---- rows ----------------------------------------------------------------------------------

    def tables(self, ids: set[str] | None = None) -> dict[str, list[tuple]]:
        """table -> rows; `ids`: only the rows of those resources (scim_resources; group_members where
        the group or the member is one of them) - a refolded tail's scope."""
        t = self.tenant
        rss = self.schemas()
        decimal = {k: _has_decimal(a for s in (rs.schema, *[x for x, _ in rs.extensions]) for a in s.attributes)
                   for k, rs in rss.items()} if self.extensions else {}
        resources = []
        isos: dict[datetime, str] = {}      # a batch of creates shares its recorded time: each formatted once
        for rid, r in (self.res.items() if ids is None else ((i, self.res[i]) for i in ids if i in self.res)):
            doc = r.doc
            if r.type == "User" and rid in self.erased:
                doc = erased_doc(doc)
            if decimal.get(r.type):
                doc = decimals_back(doc, rss[r.type])
            created = isos.get(r.created) or isos.setdefault(r.created, iso(r.created))
            modified = isos.get(r.modified) or isos.setdefault(r.modified, iso(r.modified))
            full = stored_doc(rid, _Doc(r.type, doc), created, modified)
            resources.append((t, rid, r.type, _dumps(full), _dumps(casefold_doc(full, rss[r.type])), r.version,
                              r.created, r.modified))
        members = [(t, g, m, mt) for g, ms in self.members.items() if g in self.res
                   for m, mt in ms.items() if m in self.res and (ids is None or g in ids or m in ids)]
        exts = [(t, sid, rt, req, _dumps(defn), at, seq) for sid, (rt, req, defn, at, seq) in self.extensions.items()]
        return {"scim_resources": resources, "group_members": members, "scim_extensions": exts}


@dataclass(slots=True)
class _Doc:
    type: str
    doc: dict


def _dumps(v: Any) -> str:
    return orjson.dumps(v).decode()


async def subject_keys(conn, tenant: str) -> dict[str, bytes]:
    return {r["subject"]: bytes(r["key"]) for r in await conn.fetch(
        "SELECT subject, key FROM subject_keys WHERE tenant_id = $1", tenant)}
