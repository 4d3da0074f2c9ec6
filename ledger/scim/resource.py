"""Validate and normalise SCIM request bodies (POST, PUT) into the canonical resource dict.

The canonical form (shared with `ledger.scim.schema`, the filter evaluator and the PATCH engine):
core and common attributes at the top level with the schema's spelling, extension attributes
under the key equal to the extension URN, `schemas` = core URN + the extension URNs present,
unassigned attributes absent (never `null`, `[]` or `{}`).

Why not scim2-models: validating the RFC 7643 §8.2-like body below with
``User[EnterpriseUser].model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST)`` costs
~310 µs per call on the dev box (~370 µs with the dump back to a dict), above the 300 µs budget
for ≥ 1,000 creates/s on 2 cores, and it rejects Entra's bare `manager` string and a manager
without `$ref`. This module is a schema-driven walk over `ResourceSchema` instead (~15-25 µs per
user, see tests/test_scim_resource.py::test_normalize_is_fast).

Decisions (RFC 7644 §3.3, §3.5.1, §3.12; RFC 7643 §2):
* Attribute names are matched case-insensitively; core attributes may also be URN-prefixed
  (``urn:...:core:2.0:User:userName``).
* An unknown top-level attribute is rejected with 400 ``invalidValue`` ("not compatible with the
  resource schema", §3.12; the SCIM interop profile asks providers to reject what they do not
  define) — unless ``ignore_unknown=True``. A key that is an unregistered schema URN with a value
  is also ``invalidValue``. Unknown URIs in ``schemas`` without attributes are ignored (Entra's
  ADSCIM Group URI). Unknown sub-attributes are ``invalidValue`` too, except ``$ref: null``-style
  nulls which are simply dropped.
* Dropped silently: ``password`` (never stored), ``id``, ``meta``, ``schemas`` (recomputed), every
  readOnly attribute or sub-attribute (``groups``, ``manager.displayName``) — §3.3 "SHALL be
  ignored".
* ``null`` means unassigned (RFC 7643 §2.5); empty arrays/objects too.
* Booleans arrive as strings from Entra: "True"/"False" (any case) are coerced for boolean
  attributes; integer strings for integer attributes; dateTime strings are validated (xsd
  dateTime as `filter.parse_datetime` reads it, kept as sent except that fractions beyond
  microseconds are truncated); binary must be base64. A string containing NUL is ``invalidValue``.
* A bare string for a complex attribute that has a ``value`` sub-attribute becomes
  ``{"value": s}`` (Entra's ``manager``; also array elements such as member ids).
* Multi-valued attributes: a single value is wrapped in a list, identical duplicates are dropped
  (``members`` deduplicated by ``value``), more than one ``primary: true`` is ``invalidValue``.
* Required attributes (userName, Group displayName; required sub-attributes of present values)
  missing or empty → ``invalidValue``.
* PUT (``for_replace=True``): immutable attributes may be re-sent equal (caseExact=false strings
  compared case-insensitively) but not changed (→ 400 ``mutability``); when omitted, the existing
  value is kept (it cannot be cleared). readOnly attributes are ignored. The result never contains
  ``id``/``meta``: the caller adds server-assigned attributes.
* ``decimal`` values are returned as int when integral, else float (the event canonical encoding
  forbids floats: callers storing decimals must encode them).
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from ledger.scim.filter import parse_datetime
from ledger.scim.schema import Attribute, ResourceSchema

__all__ = [
    "ScimError",
    "normalize",
    "coerce_value",
    "compiled",
    "CompiledSchema",
    "CAttr",
    "values_equal",
]


class ScimError(Exception):
    """A SCIM protocol error (RFC 7644 §3.12); the HTTP layer renders it as an Error body."""

    def __init__(self, status: int, scim_type: str | None, detail: str):
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ScimError({self.status}, {self.scim_type!r}, {self.detail!r})"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": str(self.status),
            "detail": self.detail,
        }
        if self.scim_type:
            d["scimType"] = self.scim_type
        return d


def _invalid(detail: str) -> ScimError:
    return ScimError(400, "invalidValue", detail)


# --------------------------------------------------------------------------------------------
# Compiled view of a ResourceSchema: dict lookups instead of linear scans, computed once.


class CAttr:
    """A compiled attribute: the schema `Attribute` plus lowercase lookup tables."""

    __slots__ = ("attr", "name", "type", "multi", "required", "case_exact", "mutability",
                 "subs", "urn", "ext", "key", "has_value_sub", "required_subs")

    def __init__(self, attr: Attribute, urn: str, ext: bool):
        self.attr = attr
        self.name = attr.name
        self.type = attr.type
        self.multi = attr.multi_valued
        self.required = attr.required
        self.case_exact = attr.case_exact
        self.mutability = attr.mutability
        self.urn = urn
        self.ext = ext
        #: the name reported in changed paths: bare for core/common, URN-prefixed for extensions
        self.key = f"{urn}:{attr.name}" if ext else attr.name
        self.subs: dict[str, CAttr] = {}
        for s in attr.sub_attributes:
            self.subs[s.name.lower()] = CAttr(s, urn, ext)
        self.has_value_sub = "value" in self.subs
        self.required_subs = tuple(s for s in self.subs.values()
                                   if s.required and s.mutability != "readOnly")

    def sub(self, name: str) -> "CAttr | None":
        return self.subs.get(name.lower())

    def __repr__(self) -> str:  # pragma: no cover
        return f"CAttr({self.key})"


class CompiledSchema:
    """Lowercase lookup tables over a `ResourceSchema` (core + common + extensions)."""

    def __init__(self, rs: ResourceSchema):
        self.rs = rs
        self.core_urn = rs.schema.id
        self.core: dict[str, CAttr] = {}
        for a in rs.common_attributes:
            self.core[a.name.lower()] = CAttr(a, rs.schema.id, False)
        for a in rs.schema.attributes:
            self.core[a.name.lower()] = CAttr(a, rs.schema.id, False)
        #: lowercase URN -> (URN, {lowercase name -> CAttr}, required)
        self.exts: dict[str, tuple[str, dict[str, CAttr], bool]] = {}
        for s, req in rs.extensions:
            self.exts[s.id.lower()] = (s.id, {a.name.lower(): CAttr(a, s.id, True)
                                             for a in s.attributes}, req)
        # URN prefixes, longest first, for "urn:...:attr" keys
        self.prefixes: list[tuple[str, str | None]] = sorted(
            [(self.core_urn.lower() + ":", None)] + [(u + ":", u) for u in self.exts],
            key=lambda p: len(p[0]), reverse=True)
        self.required_core = tuple(a for a in self.core.values()
                                   if a.required and a.mutability != "readOnly")
        self.immutable: tuple[CAttr, ...] = tuple(
            a for a in self.all_attrs() if a.mutability == "immutable")
        #: PATCH path text -> resolved target (filled by ledger.scim.patch)
        self.path_cache: dict[str, Any] = {}

    def all_attrs(self):
        yield from self.core.values()
        for _, attrs, _ in self.exts.values():
            yield from attrs.values()

    def ext_urn(self, key: str) -> str | None:
        """The registered extension URN spelled `key` (case-insensitive), or None."""
        e = self.exts.get(key.lower())
        return e[0] if e else None

    def lookup(self, key: str) -> tuple[CAttr | None, str | None]:
        """Resolve a top-level key `attr` or `urn:...:attr` (no sub-attribute).

        Returns (attribute or None, extension URN it was prefixed with or None)."""
        low = key.lower()
        a = self.core.get(low)
        if a is not None:
            return a, None
        if ":" in low:
            for prefix, ext in self.prefixes:
                if low.startswith(prefix):
                    rest = low[len(prefix):]
                    if ext is None:
                        return self.core.get(rest), None
                    return self.exts[ext][1].get(rest), self.exts[ext][0]
        return None, None


_COMPILED: dict[int, tuple[ResourceSchema, CompiledSchema]] = {}


def compiled(rs: ResourceSchema) -> CompiledSchema:
    """The (cached) compiled form of a ResourceSchema (keyed by identity: hashing a frozen
    dataclass tree on every request would cost more than the lookup)."""
    hit = _COMPILED.get(id(rs))
    if hit is not None and hit[0] is rs:
        return hit[1]
    c = CompiledSchema(rs)
    if len(_COMPILED) > 256:  # schemas are long-lived; bound the cache anyway
        _COMPILED.clear()
    _COMPILED[id(rs)] = (rs, c)
    return c


# --------------------------------------------------------------------------------------------
# Values

_TRUE = {"true": True, "false": False}
_INT_RE = re.compile(r"[+-]?\d+")
# xsd:dateTime (RFC 7643 §2.3.5): date 'T' time, optional fraction and offset.
_DT_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")


def _where(attr: CAttr, where: str | None) -> str:
    return where or attr.key


def coerce_value(attr: CAttr, value: Any, *, where: str | None = None,
                 ignore_unknown: bool = False) -> Any:
    """Coerce/validate one (single) value of `attr`; returns the canonical value or None
    (unassigned). Complex values come back as dicts with canonical sub-attribute keys,
    readOnly sub-attributes and nulls dropped. Raises ScimError(400, invalidValue)."""
    if value is None:
        return None
    t = attr.type
    if t == "string" or t == "reference":
        if isinstance(value, str):
            if "\x00" in value:
                raise _invalid(f"{_where(attr, where)}: NUL character in string")
            return value
        raise _invalid(f"{_where(attr, where)}: expected a string, got {type(value).__name__}")
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            b = _TRUE.get(value.strip().lower())
            if b is not None:
                return b
        raise _invalid(f"{_where(attr, where)}: expected a boolean, got {value!r}")
    if t == "complex":
        if isinstance(value, dict):
            return _complex(attr, value, where, ignore_unknown)
        if isinstance(value, str) and attr.has_value_sub:
            return _complex(attr, {"value": value}, where, ignore_unknown)
        raise _invalid(f"{_where(attr, where)}: expected an object, got {type(value).__name__}")
    if t == "integer":
        if isinstance(value, bool):
            raise _invalid(f"{_where(attr, where)}: expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value.strip())
        raise _invalid(f"{_where(attr, where)}: expected an integer, got {value!r}")
    if t == "decimal":
        if isinstance(value, bool):
            raise _invalid(f"{_where(attr, where)}: expected a number, got a boolean")
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _invalid(f"{_where(attr, where)}: expected a number, got {value!r}") from None
        if isinstance(value, (int, float)):
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise _invalid(f"{_where(attr, where)}: number must be finite")
                if value.is_integer():
                    return int(value)
            return value
        raise _invalid(f"{_where(attr, where)}: expected a number, got {type(value).__name__}")
    if t == "dateTime":
        if isinstance(value, str):
            m = _DT_RE.fullmatch(value)
            if m is not None:
                frac = m.group(1)
                if frac and len(frac) > 7:
                    # .NET sends 7 fractional digits; the filter evaluator and SQL take 6
                    value = value[:m.start(1) + 7] + value[m.end(1):]
                if parse_datetime(value) is not None:
                    return value
        raise _invalid(f"{_where(attr, where)}: expected an xsd:dateTime string "
                       f"(e.g. 2024-01-31T12:00:00Z), got {value!r}")
    if t == "binary":
        if isinstance(value, str):
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(f"{_where(attr, where)}: invalid base64 binary value") from None
            return value
        raise _invalid(f"{_where(attr, where)}: expected a base64 string")
    raise _invalid(f"{_where(attr, where)}: unsupported attribute type {t}")  # pragma: no cover


def _complex(attr: CAttr, value: dict, where: str | None, ignore_unknown: bool) -> dict | None:
    out: dict[str, Any] = {}
    subs = attr.subs
    for k, v in value.items():
        if not isinstance(k, str):
            raise _invalid(f"{_where(attr, where)}: non-string key")
        s = subs.get(k.lower())
        if s is None:
            if v is None or ignore_unknown:
                continue
            raise _invalid(f"{_where(attr, where)}: unknown sub-attribute {k!r}")
        if v is None or s.mutability == "readOnly":
            continue
        if s.multi:  # never in the standard schemas, supported for custom ones
            cv = _multi_values(s, v, f"{_where(attr, where)}.{s.name}", ignore_unknown)
        else:
            cv = coerce_value(s, v, where=f"{_where(attr, where)}.{s.name}",
                              ignore_unknown=ignore_unknown)
        if cv is not None:
            out[s.name] = cv
    return out or None


def _multi_values(attr: CAttr, value: Any, where: str, ignore_unknown: bool) -> list | None:
    if not isinstance(value, list):
        value = [value]
    out: list = []
    for v in value:
        cv = coerce_value(attr, v, where=where, ignore_unknown=ignore_unknown)
        if cv is not None:
            out.append(cv)
    return out or None


def dedupe(attr: CAttr, values: list) -> list:
    """Drop identical duplicates (for `members`, duplicates by `value`); order kept."""
    if len(values) < 2:
        return values
    if attr.name == "members" and attr.type == "complex":
        seen: set = set()
        out = []
        for v in values:
            key = v.get("value") if isinstance(v, dict) else v
            if key in seen:
                continue
            seen.add(key)
            out.append(v)
        return out
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def check_primary(attr: CAttr, values: list, where: str | None = None) -> None:
    if attr.type != "complex" or "primary" not in attr.subs:
        return
    n = 0
    for v in values:
        if v.get("primary") is True:
            n += 1
    if n > 1:
        raise _invalid(f"{_where(attr, where)}: more than one value has primary true")


def check_required_subs(attr: CAttr, value: Any) -> None:
    if not attr.required_subs:
        return
    for v in (value if isinstance(value, list) else [value]):
        for s in attr.required_subs:
            if v.get(s.name) in (None, ""):
                raise _invalid(f"{attr.key}: required sub-attribute {s.name!r} is missing")


def normalize_attr_value(attr: CAttr, value: Any, *, ignore_unknown: bool = False) -> Any:
    """The canonical value of a whole attribute (a list for multi-valued ones) or None."""
    if attr.multi:
        vals = _multi_values(attr, value, attr.key, ignore_unknown)
        if vals is None:
            return None
        vals = dedupe(attr, vals)
        check_primary(attr, vals)
        check_required_subs(attr, vals)
        return vals
    if isinstance(value, list):
        raise _invalid(f"{attr.key}: single-valued attribute given an array")
    v = coerce_value(attr, value, ignore_unknown=ignore_unknown)
    if v is not None and attr.type == "complex":
        check_required_subs(attr, v)
    return v


def values_equal(attr: CAttr, a: Any, b: Any) -> bool:
    """Equality as SCIM compares values: caseExact=false strings case-insensitively."""
    if a == b:
        return True
    if attr.type == "complex":
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(values_equal(attr, x, y) for x, y in zip(a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            for k in a:
                s = attr.subs.get(k.lower())
                if s is None or not values_equal(s, a[k], b[k]):
                    return False
            return True
        return False
    if attr.type in ("string", "reference") and not attr.case_exact:
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(values_equal(attr, x, y) for x, y in zip(a, b))
        if isinstance(a, str) and isinstance(b, str):
            return a.casefold() == b.casefold()
    return False


# --------------------------------------------------------------------------------------------
# Bodies

_DROP_ALWAYS = frozenset({"schemas", "id", "meta", "password"})


def normalize(body: dict, resource_schema: ResourceSchema, *, for_replace: bool = False,
              existing: dict | None = None, ignore_unknown: bool = False) -> dict:
    """Validate a POST (or, with ``for_replace=True``, PUT) body and return the canonical dict.

    ``existing`` is the stored canonical resource (PUT only): immutable attributes are compared
    with it and carried over when omitted. Raises `ScimError`."""
    if not isinstance(body, dict):
        raise ScimError(400, "invalidSyntax", "the request body must be a JSON object")
    cs = compiled(resource_schema)
    schemas = body.get("schemas")
    if schemas is not None and not (isinstance(schemas, list)
                                    and all(isinstance(s, str) for s in schemas)):
        raise _invalid("schemas must be an array of strings")

    out: dict[str, Any] = {}
    ext_out: dict[str, dict[str, Any]] = {}

    def put(a: CAttr, raw: Any, target: dict) -> None:
        if a.mutability == "readOnly":
            return
        v = normalize_attr_value(a, raw, ignore_unknown=ignore_unknown)
        if v is None:
            target.pop(a.name, None)
        else:
            target[a.name] = v

    for key, raw in body.items():
        if not isinstance(key, str):
            raise _invalid("attribute names must be strings")
        low = key.lower()
        a = cs.core.get(low)
        if a is not None:
            if low in _DROP_ALWAYS:
                continue
            put(a, raw, out)
            continue
        if low in _DROP_ALWAYS:
            continue
        ext = cs.exts.get(low)
        if ext is not None:
            urn, attrs, _ = ext
            if raw is None:
                continue
            if not isinstance(raw, dict):
                raise _invalid(f"{urn}: extension value must be an object")
            target = ext_out.setdefault(urn, {})
            for k, v in raw.items():
                ea = attrs.get(k.lower()) if isinstance(k, str) else None
                if ea is None:
                    if ignore_unknown or v is None:
                        continue
                    raise _invalid(f"unknown attribute {k!r} in extension {urn}")
                put(ea, v, target)
            continue
        if ":" in key:
            a, urn = cs.lookup(key)
            if a is not None:
                if a.name.lower() in _DROP_ALWAYS and urn is None:
                    continue
                put(a, raw, ext_out.setdefault(urn, {}) if urn else out)
                continue
            if raw is None or ignore_unknown:
                continue
            raise _invalid(f"{key!r}: attributes of an unregistered schema extension")
        if ignore_unknown:
            continue
        raise _invalid(f"unknown attribute {key!r} for resource type {resource_schema.name}")

    if for_replace and existing is not None:
        _check_immutable_replace(cs, out, ext_out, existing)

    # required attributes (RFC 7643 §2.2): present and not empty
    for a in cs.required_core:
        v = out.get(a.name)
        if v is None or v == "":
            raise _invalid(f"required attribute {a.name!r} is missing")
    for urn_low, (urn, attrs, required) in cs.exts.items():
        target = ext_out.get(urn)
        if required and not target:
            raise _invalid(f"required schema extension {urn} is missing")
        if target:
            for a in attrs.values():
                if a.required and a.mutability != "readOnly" and target.get(a.name) in (None, ""):
                    raise _invalid(f"required attribute {a.key!r} is missing")

    result: dict[str, Any] = {"schemas": [cs.core_urn]}
    result.update(out)
    for urn, target in ext_out.items():
        if target:
            result["schemas"].append(urn)
            result[urn] = target
    return result


def _check_immutable_replace(cs: CompiledSchema, out: dict, ext_out: dict, existing: dict) -> None:
    for a in cs.immutable:
        if a.ext:
            old_c = existing.get(a.urn)
            old = old_c.get(a.name) if isinstance(old_c, dict) else None
            new_c = ext_out.get(a.urn)
            new = new_c.get(a.name) if new_c else None
        else:
            old = existing.get(a.name)
            new = out.get(a.name)
        if old is None:
            continue
        if new is None:
            # not asserted by the client: an immutable value cannot be cleared, keep it
            (ext_out.setdefault(a.urn, {}) if a.ext else out)[a.name] = old
            continue
        if not values_equal(a, old, new):
            raise ScimError(400, "mutability", f"attribute {a.key!r} is immutable")
