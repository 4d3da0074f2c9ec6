"""Rendering stored SCIM documents: meta (location, version), `attributes`/`excludedAttributes`.

RFC 7643 §7 `returned`: "always" attributes (id) are returned whatever the parameters, "never"
ones never, "request" ones only when listed in `attributes`. Unknown attribute names in the
parameters are ignored (RFC 7644 §3.4.2.5 gives no error for them; IdPs send vendor names).
"""
from __future__ import annotations

from typing import Any

from ledger.scim.schema import ResourceSchema

ALL = None


def etag(version: int) -> str:
    return f'W/"{version}"'


def with_meta(doc: dict, base: str, type_: str, version: int) -> dict:
    meta = dict(doc.get("meta") or {})
    meta["resourceType"] = type_
    meta["location"] = f"{base}/{'Users' if type_ == 'User' else 'Groups'}/{doc['id']}"
    meta["version"] = etag(version)
    doc["meta"] = meta
    return doc


def wants(attr: str, rs: ResourceSchema, attributes: list[str], excluded: list[str]) -> bool:
    """Whether the (top-level core) attribute `attr` is returned: lets callers skip assembling
    `members` / `groups` when they would be dropped."""
    low = attr.lower()

    def names(paths):
        out = set()
        for p in paths:
            ra = rs.resolve(p)
            if ra is not None and not ra.extension:
                out.add((ra.attribute.name.lower(), ra.sub_attribute is not None))
        return out

    if attributes:
        return any(n == low for n, _ in names(attributes))
    return (low, False) not in names(excluded)


def _spec(paths: list[str], rs: ResourceSchema) -> dict[tuple[str | None, str], set[str] | None]:
    """{(extension URN or None, attribute name): set of sub-attribute names, or ALL}"""
    spec: dict[tuple[str | None, str], set[str] | None] = {}
    for p in paths:
        ext = rs.extension(p)
        if ext is not None:   # a whole extension named by its URN
            for a in ext.attributes:
                spec[(ext.id, a.name)] = ALL
            continue
        ra = rs.resolve(p)
        if ra is None:
            continue
        key = (ra.schema if ra.extension else None, ra.attribute.name)
        if ra.sub_attribute is None:
            spec[key] = ALL
        elif key not in spec or spec[key] is not ALL:
            spec.setdefault(key, set()).add(ra.sub_attribute.name)  # type: ignore[union-attr]
    return spec


def _only_subs(value: Any, subs: set[str]) -> Any:
    if isinstance(value, list):
        out = [{k: v for k, v in e.items() if k in subs} for e in value if isinstance(e, dict)]
        return [e for e in out if e] or None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k in subs} or None
    return value


def _without_subs(value: Any, subs: set[str]) -> Any:
    if isinstance(value, list):
        out = [{k: v for k, v in e.items() if k not in subs} for e in value if isinstance(e, dict)]
        return [e for e in out if e] or None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in subs} or None
    return value


def _returned(rs: ResourceSchema) -> dict[tuple[str | None, str], str]:
    out = {}
    for urn, is_ext, a in rs.all_attributes():
        out[(urn if is_ext else None, a.name)] = a.returned
    return out


_DROP = object()


def _asked(value: Any, returned: str, spec) -> Any:
    """`attributes=`: an attribute is returned when it is `always` returned or asked for (whole, or
    some of its sub-attributes); `never` ones never are."""
    if returned == "never":
        return _DROP
    if returned == "always" or spec is ALL:
        return value
    if spec:
        y = _only_subs(value, spec)
        return _DROP if y is None else y
    return _DROP


def _not_excluded(value: Any, returned: str, spec) -> Any:
    """`excludedAttributes=` (or neither parameter): the default set, minus what is excluded - an
    `always` attribute cannot be excluded, `never` and `request` ones are not in the default set."""
    if returned in ("never", "request"):
        return _DROP
    if returned == "always":
        return value
    if spec is ALL:
        return _DROP
    if spec:
        y = _without_subs(value, spec)
        return _DROP if y is None else y
    return value


def _walk(doc: dict, rs: ResourceSchema, returned: dict, spec: dict, keep, out: dict) -> dict:
    """Apply `keep(value, returned, spec)` to every top-level and extension attribute of `doc`."""
    for k, v in doc.items():
        if isinstance(v, dict) and rs.extension(k) is not None:
            sub = {}
            for a, x in v.items():
                y = keep(x, returned.get((k, a), "default"), spec.get((k, a), False))
                if y is not _DROP:
                    sub[a] = y
            if sub:
                out[k] = sub
            continue
        y = keep(v, returned.get((None, k), "default"), spec.get((None, k), False))
        if y is not _DROP:
            out[k] = y
    return out


def select(doc: dict, rs: ResourceSchema, attributes: list[str], excluded: list[str]) -> dict:
    """`doc` filtered by the attributes/excludedAttributes parameters (attributes wins)."""
    returned = _returned(rs)
    if attributes:
        rest = {k: v for k, v in doc.items() if k != "schemas"}
        return _walk(rest, rs, returned, _spec(attributes, rs), _asked,
                     {"schemas": doc.get("schemas", [rs.schema.id])})
    return _walk(doc, rs, returned, _spec(excluded, rs) if excluded else {}, _not_excluded, {})
