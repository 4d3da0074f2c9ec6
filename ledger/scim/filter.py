"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parser, binder, evaluator.

Pipeline: `parse_filter(text)` -> AST of frozen dataclasses (attribute names as written);
`bind(ast, resource_schema)` -> the same node classes with every path replaced by a `BoundPath`
(canonical names, `Attribute` definitions, typed comparison values); then either
`evaluate(bound, resource_dict)` here or `projections.scim_filter_sql.compile_filter(bound, ...)`.
Both implement exactly the semantics below (a property test checks they agree).

Grammar accepted (case-insensitive operators, keywords, attribute names and URNs):
    filter     = or ; or = and *("or" and) ; and = not *("and" not)
    not        = "not" "(" filter ")" | "not" atom | atom
    atom       = "(" filter ")" | attrPath "pr" | attrPath compareOp compValue
               | attrPath "[" valFilter "]"                       ; valuePath
               | attrPath "[" valFilter "]" "." subAttr ("pr" | compareOp compValue)   ; IdP form
    attrPath   = [URI ":"] ATTRNAME ["." subAttr]
    compValue  = JSON string | JSON number | true | false | null | bare word (IdP form:
                 `externalId eq jyoung`; a bare word that is a JSON number is a number)
Inside "[...]" attribute names are sub-attributes of the bracketed attribute; value paths do not
nest. Precedence: not > and > or.

Semantics (RFC 7644 §3.4.2.2 and RFC 7643 §2.5, with these precise choices):
* A path denotes a list V of values: a single-valued attribute gives [value]; a multi-valued one
  gives all its elements (or the given sub-attribute of each element); a value path keeps only
  the elements matching the bracketed filter. JSON nulls and missing keys are dropped from V
  (unassigned, null and [] are the same state, RFC 7643 §2.5).
* eq co sw ew gt ge lt le: true iff SOME v in V matches ("any value", RFC 7644). So on a missing
  attribute they are all false.
* ne: true iff V is empty or SOME v in V is not equal. On a single-valued attribute this is
  exactly `not (eq)`; a missing attribute is "not equal" to anything. On a multi-valued one it
  follows the any-value rule (`emails.value ne "a"` matches ["a", "b"]); use
  `not (emails.value eq "a")` for "no value equals".
* pr: true iff some v in V is non-empty: not null and not "" (for a complex value: some of its
  known sub-attributes is non-empty; for a multi-valued attribute: some element is).
* `x eq null` means `not (x pr)`; `x ne null` means `x pr`. Other operators reject null.
* not: plain boolean negation of the above (so `not (x eq "y")` is true on a missing x).
* A complex attribute compared without sub-attribute means its `value` sub-attribute
  (`emails co "@x"`, Entra's bare `manager eq "id"`); a complex attribute without one is an error.
* Strings (string, reference, binary) compare as text; caseExact=false attributes compare
  `str.casefold()` of both sides. gt/ge/lt/le on strings are code point order (after folding).
  dateTime compares as instants (offset-less values are UTC); co/sw/ew on a dateTime compare its
  raw text. integer/decimal compare numerically; booleans support only eq/ne; gt/ge/lt/le on
  boolean or binary, and co/sw/ew on numbers or booleans, are invalidFilter.
* A value of the wrong JSON type in the resource never matches (it counts as "not equal").
* Resource dicts use canonical key spelling (extension attributes under the URN key).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from .schema import ATTRNAME_RE, Attribute, ResolvedAttr, ResourceSchema, split_attr_path

__all__ = [
    "FilterError", "PathError", "AttrPath", "ValuePath", "Compare", "Present", "ValueFilter",
    "And", "Or", "Not", "BoundPath", "parse_filter", "parse_path", "bind", "bind_path",
    "evaluate", "format_filter", "values_of", "sort_value", "sort_target", "parse_datetime",
    "value_filter_template", "COMPARE_OPS",
]


class FilterError(ValueError):
    """An invalid filter: answer 400 with scimType `invalidFilter`."""


class PathError(FilterError):
    """An invalid PATCH path: answer 400 with scimType `invalidPath`."""


COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS = frozenset({"co", "sw", "ew"})
MAX_DEPTH = 50

CompValue = Union[str, int, Decimal, bool, None, datetime]


# ------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class AttrPath:
    """`[uri:]attr[.sub_attr]` as written (inside brackets: a bare sub-attribute name)."""

    attr: str
    sub_attr: str | None = None
    uri: str | None = None

    def __str__(self) -> str:
        s = f"{self.uri}:{self.attr}" if self.uri else self.attr
        return f"{s}.{self.sub_attr}" if self.sub_attr else s


@dataclass(frozen=True)
class ValuePath:
    """`attr[filter]` optionally followed by `.sub_attr` (PATCH paths, IdP filter form)."""

    attr: AttrPath
    filter: "Node"
    sub_attr: str | None = None

    def __str__(self) -> str:
        s = f"{self.attr}[{format_filter(self.filter)}]"
        return f"{s}.{self.sub_attr}" if self.sub_attr else s


@dataclass(frozen=True)
class BoundPath:
    """A path resolved against a resource type (or, inside brackets, against the element).

    V (see module doc) = values of `sub` (if any) of the elements of `attribute` (all array
    elements if multi-valued, else the single value), elements filtered by `value_filter`.
    """

    schema: str                       # URN of the defining schema
    attribute: Attribute              # top-level attribute (element-relative: the sub-attribute)
    sub: Attribute | None = None      # sub-attribute addressed (maybe the implicit `value`)
    container: tuple[str, ...] = ()   # keys leading to `attribute` ((urn,) for extensions)
    value_filter: "Node | None" = None  # bound against the element
    implicit_value: bool = False      # `sub` is the implicit `value` of a complex attribute
    extension: bool = False
    common: bool = False

    @property
    def target(self) -> Attribute:
        return self.sub or self.attribute

    @property
    def keys(self) -> tuple[str, ...]:
        """JSON keys to the attribute value."""
        return self.container + (self.attribute.name,)

    @property
    def elementwise(self) -> bool:
        """True if V is built by iterating elements (multi-valued or value-filtered)."""
        return self.attribute.multi_valued or self.value_filter is not None

    @property
    def resolved(self) -> ResolvedAttr:
        sub = None if self.implicit_value else self.sub
        return ResolvedAttr(self.schema, self.attribute, sub, self.extension, self.common)

    def __str__(self) -> str:
        s = f"{self.schema}:{self.attribute.name}" if self.extension else self.attribute.name
        if self.value_filter is not None:
            s += f"[{format_filter(self.value_filter)}]"
        if self.sub is not None and not self.implicit_value:
            s += f".{self.sub.name}"
        return s


Path = Union[AttrPath, ValuePath, BoundPath]


@dataclass(frozen=True)
class Compare:
    path: Path
    op: str                           # lower-case, one of COMPARE_OPS
    value: CompValue


@dataclass(frozen=True)
class Present:
    path: Path


@dataclass(frozen=True)
class ValueFilter:
    """A value path used as a filter: some element matches the bracketed filter."""

    path: Path


@dataclass(frozen=True)
class And:
    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    operand: "Node"


Node = Union[Compare, Present, ValueFilter, And, Or, Not]


# ------------------------------------------------------------------------------------------
# Tokenizer and parser

_NUMBER_RE = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
_SPACE = " \t\r\n"
_STOP = _SPACE + '()[]"'


@dataclass(frozen=True)
class _Tok:
    kind: str            # "(" ")" "[" "]" "STR" "WORD" "EOF"
    text: str
    pos: int
    value: Any = None


def _check_text(s: str, pos: int, err: type[FilterError]) -> None:
    if "\x00" in s or any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        raise err(f"invalid character in string at position {pos}")


def _tokenize(s: str, err: type[FilterError]) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in _SPACE:
            i += 1
        elif c in "()[]":
            out.append(_Tok(c, c, i))
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                raise err(f"unterminated string starting at position {i}")
            raw = s[i:j + 1]
            try:
                val = json.loads(raw, strict=False)
            except ValueError:
                raise err(f"invalid string literal {raw!r} at position {i}") from None
            _check_text(val, i, err)
            out.append(_Tok("STR", raw, i, val))
            i = j + 1
        else:
            j = i
            while j < n and s[j] not in _STOP:
                j += 1
            out.append(_Tok("WORD", s[i:j], i))
            i = j
    out.append(_Tok("EOF", "", n))
    return out


def _word_value(w: str) -> CompValue:
    low = w.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "null":
        return None
    if _NUMBER_RE.match(w):
        if re.match(r"^-?[0-9]+$", w):
            return int(w)
        return Decimal(w)
    return w  # IdP form: unquoted string


class _Parser:
    def __init__(self, text: str, err: type[FilterError] = FilterError):
        if not isinstance(text, str):
            raise err("a filter must be a string")
        self.err = err
        self.text = text
        self.toks = _tokenize(text, err)
        self.i = 0
        self.depth = 0

    # -- helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        t = self.peek()
        self.i = min(self.i + 1, len(self.toks) - 1)
        return t

    def where(self, t: _Tok) -> str:
        return "at end of input" if t.kind == "EOF" else f"at position {t.pos}"

    def expect(self, kind: str) -> _Tok:
        t = self.take()
        if t.kind != kind:
            got = "end of input" if t.kind == "EOF" else repr(t.text)
            raise self.err(f"expected {kind!r} but found {got} {self.where(t)}")
        return t

    def is_word(self, word: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "WORD" and t.text.lower() == word

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.err(f"filter nested deeper than {MAX_DEPTH} levels")

    def leave(self) -> None:
        self.depth -= 1

    def unexpected(self, t: _Tok) -> FilterError:
        if t.kind == "EOF":
            return self.err("unexpected end of filter")
        return self.err(f"unexpected {t.text!r} at position {t.pos}")

    # -- grammar
    def parse_top(self) -> Node:
        if self.peek().kind == "EOF":
            raise self.err("empty filter")
        node = self.parse_or(False)
        t = self.peek()
        if t.kind != "EOF":
            raise self.unexpected(t)
        return node

    def parse_or(self, ib: bool) -> Node:
        items = [self.parse_and(ib)]
        while self.is_word("or"):
            self.take()
            items.append(self.parse_and(ib))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self, ib: bool) -> Node:
        items = [self.parse_not(ib)]
        while self.is_word("and"):
            self.take()
            items.append(self.parse_not(ib))
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self, ib: bool) -> Node:
        if self.is_word("not"):
            nxt = self.peek(1)
            # `not (...)`, or leniently `not attr op value`; an attribute named "not" followed
            # by an operator stays an attribute.
            if nxt.kind == "(" or (
                nxt.kind == "WORD" and nxt.text.lower() not in COMPARE_OPS | {"pr"}
            ):
                self.take()
                self.enter()
                node = Not(self.parse_not(ib))
                self.leave()
                return node
        return self.parse_atom(ib)

    def parse_atom(self, ib: bool) -> Node:
        t = self.peek()
        if t.kind == "(":
            self.take()
            self.enter()
            node = self.parse_or(ib)
            self.leave()
            self.expect(")")
            return node
        if t.kind != "WORD":
            if t.kind == "EOF":
                raise self.err("unexpected end of filter: expected an attribute path")
            raise self.err(f"expected an attribute path but found {t.text!r} at position {t.pos}")
        self.take()
        if self.peek().kind == "[":
            if ib:
                raise self.err(f"value paths cannot be nested (position {self.peek().pos})")
            vp = self.parse_value_path_rest(t)
            if vp.sub_attr is None:
                return ValueFilter(vp)
            return self.parse_comparison(vp)
        return self.parse_comparison(self.attr_path(t, ib))

    def parse_value_path_rest(self, t: _Tok) -> ValuePath:
        attr = self.attr_path(t, False)
        if attr.sub_attr is not None:
            raise self.err(f"a value path needs a plain attribute before '[': {t.text!r}")
        self.expect("[")
        self.enter()
        if self.peek().kind == "]":
            raise self.err(f"empty value filter at position {self.peek().pos}")
        inner = self.parse_or(True)
        self.leave()
        self.expect("]")
        sub = None
        nt = self.peek()
        if nt.kind == "WORD" and nt.text.startswith("."):
            self.take()
            sub = nt.text[1:]
            if not ATTRNAME_RE.match(sub):
                raise self.err(f"invalid sub-attribute {nt.text!r} at position {nt.pos}")
        return ValuePath(attr, inner, sub)

    def attr_path(self, t: _Tok, ib: bool) -> AttrPath:
        try:
            uri, attr, sub = split_attr_path(t.text)
        except ValueError:
            raise self.err(f"invalid attribute path {t.text!r} at position {t.pos}") from None
        if ib and (uri is not None or sub is not None):
            raise self.err(
                f"inside a value filter, {t.text!r} must be a plain sub-attribute name "
                f"(position {t.pos})"
            )
        return AttrPath(attr, sub, uri)

    def parse_comparison(self, path: AttrPath | ValuePath) -> Node:
        t = self.take()
        if t.kind != "WORD":
            got = "end of input" if t.kind == "EOF" else repr(t.text)
            raise self.err(f"expected an operator after {str(path)!r} but found {got}")
        op = t.text.lower()
        if op == "pr":
            return Present(path)
        if op not in COMPARE_OPS:
            raise self.err(f"unknown operator {t.text!r} at position {t.pos}")
        v = self.take()
        if v.kind == "STR":
            value: CompValue = v.value
        elif v.kind == "WORD":
            value = _word_value(v.text)
        else:
            raise self.err(f"expected a value after {t.text!r} {self.where(v)}")
        return Compare(path, op, value)


def parse_filter(text: str) -> Node:
    """Parse a SCIM filter; FilterError on any syntax error."""
    return _Parser(text).parse_top()


def parse_path(text: str) -> AttrPath | ValuePath:
    """Parse a PATCH path: `attrPath`, `attr[valFilter]`, `attr[valFilter].subAttr`
    (URN prefixes allowed); PathError on any syntax error.

    A path that is only a schema URN (e.g. the enterprise extension URN) parses as an AttrPath
    whose `uri:attr` is that URN; check `ResourceSchema.schema_for_urn(text)` before binding."""
    p = _Parser(text, PathError)
    t = p.take()
    if t.kind != "WORD":
        raise PathError("empty path" if t.kind == "EOF" else f"invalid path {text!r}")
    if p.peek().kind == "[":
        path: AttrPath | ValuePath = p.parse_value_path_rest(t)
    else:
        path = p.attr_path(t, False)
    if p.peek().kind != "EOF":
        raise PathError(f"unexpected {p.peek().text!r} in path at position {p.peek().pos}")
    return path


# ------------------------------------------------------------------------------------------
# Formatting (AST -> filter text that parses back to the same AST)


def _format_value(v: CompValue) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, Decimal)):
        return str(v)
    if isinstance(v, datetime):
        return json.dumps(v.isoformat())
    return json.dumps(v, ensure_ascii=False)


def format_filter(node: Node) -> str:
    if isinstance(node, Compare):
        return f"{node.path} {node.op} {_format_value(node.value)}"
    if isinstance(node, Present):
        return f"{node.path} pr"
    if isinstance(node, ValueFilter):
        return str(node.path)
    if isinstance(node, Not):
        return f"not ({format_filter(node.operand)})"
    if isinstance(node, (And, Or)):
        word = " and " if isinstance(node, And) else " or "
        parts = []
        for o in node.operands:
            s = format_filter(o)
            parts.append(f"({s})" if isinstance(o, (And, Or)) else s)
        return word.join(parts)
    raise TypeError(f"not a filter node: {node!r}")


# ------------------------------------------------------------------------------------------
# Binding


_DT_RE = re.compile(
    r"^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):([0-5][0-9]):"
    r"([0-5][0-9])(\.[0-9]{1,6})?(Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?$"
)
#: The same shapes as POSIX regexes for PostgreSQL (with / without an offset).
DT_SQL_RE_OFFSET = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    "[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
DT_SQL_RE_LOCAL = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    "[0-5][0-9](\\.[0-9]{1,6})?$"
)


def parse_datetime(s: Any) -> datetime | None:
    """An xsd:dateTime string (offset-less = UTC) as an aware datetime; None if not one."""
    if not isinstance(s, str):
        return None
    m = _DT_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, se, frac, off = m.groups()
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if off is None or off == "Z":
        tz = timezone.utc
    else:
        sign = -1 if off[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(se), micro, tzinfo=tz)
    except ValueError:
        return None


class _ElementScope:
    """Binding scope inside `attr[...]`: names are sub-attributes of `parent`."""

    def __init__(self, parent: Attribute, schema: str):
        self.parent = parent
        self.schema = schema


def _resolve(path: AttrPath, scope: ResourceSchema | _ElementScope, err: type[FilterError]) -> BoundPath:
    if isinstance(scope, _ElementScope):
        if path.uri is not None or path.sub_attr is not None:
            raise err(f"{path} must be a plain sub-attribute name inside a value filter")
        a = scope.parent.sub(path.attr)
        if a is None:
            raise err(f"unknown sub-attribute {path.attr!r} of {scope.parent.name!r}")
        return BoundPath(schema=scope.schema, attribute=a)
    r = scope.resolve_parts(path.uri, path.attr, path.sub_attr)
    if r is None:
        if path.uri is not None and scope.schema_for_urn(path.uri) is None:
            raise err(f"unknown schema {path.uri!r} in attribute path {str(path)!r}")
        base = scope.resolve_parts(path.uri, path.attr)
        if base is not None and path.sub_attr is not None:
            if not base.attribute.is_complex:
                raise err(f"{base.attribute.name!r} has no sub-attributes")
            raise err(f"unknown sub-attribute {path.sub_attr!r} of {base.attribute.name!r}")
        raise err(f"unknown attribute {str(path)!r}")
    return BoundPath(
        schema=r.schema, attribute=r.attribute, sub=r.sub_attribute, container=r.container,
        extension=r.extension, common=r.common,
    )


def _bind_path(path: Path, scope: ResourceSchema | _ElementScope, err: type[FilterError],
               depth: int = 0) -> BoundPath:
    if isinstance(path, BoundPath):
        return path
    if isinstance(path, AttrPath):
        bp = _resolve(path, scope, err)
    elif isinstance(path, ValuePath):
        if isinstance(scope, _ElementScope):
            raise err("value paths cannot be nested")
        bp = _resolve(path.attr, scope, err)
        if bp.sub is not None or not bp.attribute.is_complex:
            raise err(f"a value filter needs a complex attribute, {str(path.attr)!r} is not one")
        inner = _bind(path.filter, _ElementScope(bp.attribute, bp.schema), err, depth + 1)
        sub = None
        if path.sub_attr is not None:
            sub = bp.attribute.sub(path.sub_attr)
            if sub is None:
                raise err(f"unknown sub-attribute {path.sub_attr!r} of {bp.attribute.name!r}")
        bp = replace(bp, value_filter=inner, sub=sub)
    else:
        raise TypeError(f"not a path: {path!r}")
    if bp.sub is not None and bp.sub.multi_valued:
        raise err(f"multi-valued sub-attribute {bp.sub.name!r} is not supported in paths")
    return bp


def bind_path(path: AttrPath | ValuePath | str, resource_schema: ResourceSchema) -> BoundPath:
    """Resolve a PATCH path (text or parsed); PathError if it does not fit the schema.
    `bp.value_filter` (if any) can be evaluated on an element with `evaluate(f, element)`."""
    if isinstance(path, str):
        path = parse_path(path)
    return _bind_path(path, resource_schema, PathError)


def _coerce(target: Attribute, op: str, value: CompValue, path: str, err: type[FilterError]) -> CompValue:
    t = target.type
    if t in ("string", "reference", "binary"):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, Decimal)):
            return str(value)
        return value
    if t == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise err(f"{path} is a boolean; cannot compare it with {value!r}")
        return value
    if t in ("integer", "decimal"):
        if isinstance(value, bool):
            raise err(f"{path} is a number; cannot compare it with {value!r}")
        if isinstance(value, (int, Decimal)):
            return Decimal(value)
        if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
            return Decimal(value.strip())
        raise err(f"{path} is a number; cannot compare it with {value!r}")
    if t == "dateTime":
        if not isinstance(value, str):
            raise err(f"{path} is a dateTime; cannot compare it with {value!r}")
        if op in SUBSTRING_OPS:
            return value
        dt = parse_datetime(value)
        if dt is None:
            raise err(f"{path}: {value!r} is not a valid dateTime (e.g. 2024-01-31T12:00:00Z)")
        return dt
    raise err(f"cannot compare {path} ({t})")


def _bind(node: Node, scope: ResourceSchema | _ElementScope, err: type[FilterError],
          depth: int = 0) -> Node:
    if depth > MAX_DEPTH * 3:
        raise err("filter nested too deeply")
    if isinstance(node, And):
        return And(tuple(_bind(o, scope, err, depth + 1) for o in node.operands))
    if isinstance(node, Or):
        return Or(tuple(_bind(o, scope, err, depth + 1) for o in node.operands))
    if isinstance(node, Not):
        return Not(_bind(node.operand, scope, err, depth + 1))
    if isinstance(node, ValueFilter):
        bp = _bind_path(node.path, scope, err, depth)
        if bp.value_filter is None or bp.sub is not None:
            raise err(f"{bp} is not a value filter")
        _check_filterable(bp, err)
        return ValueFilter(bp)
    if isinstance(node, Present):
        bp = _bind_path(node.path, scope, err, depth)
        _check_filterable(bp, err)
        return Present(bp)
    if isinstance(node, Compare):
        op = node.op.lower()
        if op not in COMPARE_OPS:
            raise err(f"unknown operator {node.op!r}")
        bp = _bind_path(node.path, scope, err, depth)
        _check_filterable(bp, err)
        if node.value is None:
            if op == "eq":
                return Not(Present(bp))
            if op == "ne":
                return Present(bp)
            raise err(f"operator {op!r} cannot be used with null")
        if bp.target.is_complex:
            v = bp.target.sub("value")
            if v is None:
                raise err(f"{bp} is complex; compare one of its sub-attributes instead")
            bp = replace(bp, sub=v, implicit_value=True)
        t = bp.target.type
        if op in ORDER_OPS and t in ("boolean", "binary"):
            raise err(f"operator {op!r} is not allowed on {t} attribute {bp}")
        if op in SUBSTRING_OPS and t in ("boolean", "integer", "decimal"):
            raise err(f"operator {op!r} is not allowed on {t} attribute {bp}")
        if op not in ("eq", "ne") and t == "boolean":
            raise err(f"operator {op!r} is not allowed on boolean attribute {bp}")
        value = _coerce(bp.target, op, node.value, str(bp), err)
        return Compare(bp, op, value)
    raise TypeError(f"not a filter node: {node!r}")


def _check_filterable(bp: BoundPath, err: type[FilterError]) -> None:
    for a in (bp.attribute, bp.sub):
        if a is not None and (a.returned == "never" or a.mutability == "writeOnly"):
            raise err(f"attribute {a.name!r} cannot be used in a filter")


def bind(ast: Node | str, resource_schema: ResourceSchema) -> Node:
    """Resolve every path of a filter against a resource type; FilterError on unknown
    attributes or comparisons the attribute type does not allow. Accepts filter text too."""
    if isinstance(ast, str):
        ast = parse_filter(ast)
    return _bind(ast, resource_schema, FilterError)


# ------------------------------------------------------------------------------------------
# Evaluation


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _elements(bp: BoundPath, resource: Any) -> list[Any]:
    """The elements V is built from (before taking `sub`)."""
    base = resource
    for k in bp.container:
        base = _get(base, k)
    val = _get(base, bp.attribute.name)
    if bp.attribute.multi_valued:
        elems = list(val) if isinstance(val, list) else []
    elif bp.value_filter is not None:
        elems = [val] if val is not None else []
    else:
        elems = [val]
    if bp.value_filter is not None:
        elems = [e for e in elems if evaluate(bp.value_filter, e)]
    return elems


def values_of(bp: BoundPath, resource: Any) -> list[Any]:
    """V: the non-null values a bound path denotes in a resource (or element) dict."""
    elems = _elements(bp, resource)
    if bp.sub is not None:
        elems = [_get(e, bp.sub.name) for e in elems]
    return [v for v in elems if v is not None]


def _nonempty(v: Any) -> bool:
    return v is not None and v != ""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: int | float) -> Decimal:
    return Decimal(v) if isinstance(v, int) else Decimal(repr(v))


def _match(target: Attribute, op: str, c: CompValue, v: Any) -> bool:
    """One value against the (bound, typed) comparison value; op is not 'ne'."""
    t = target.type
    if t in ("string", "reference", "binary") or (t == "dateTime" and op in SUBSTRING_OPS):
        if not isinstance(v, str):
            return False
        assert isinstance(c, str)
        if t != "dateTime" and not target.case_exact:
            v, c = v.casefold(), c.casefold()
        if op == "eq":
            return v == c
        if op == "co":
            return c in v
        if op == "sw":
            return v.startswith(c)
        if op == "ew":
            return v.endswith(c)
        return _order(op, v, c)
    if t == "boolean":
        return isinstance(v, bool) and v == c
    if t in ("integer", "decimal"):
        if not _is_number(v):
            return False
        try:
            dv = _num(v)
        except InvalidOperation:
            return False
        return dv == c if op == "eq" else _order(op, dv, c)
    if t == "dateTime":
        dt = parse_datetime(v)
        if dt is None:
            return False
        return dt == c if op == "eq" else _order(op, dt, c)
    return False


def _order(op: str, a: Any, b: Any) -> bool:
    if op == "gt":
        return a > b
    if op == "ge":
        return a >= b
    if op == "lt":
        return a < b
    if op == "le":
        return a <= b
    raise AssertionError(op)


def _present(bp: BoundPath, resource: Any) -> bool:
    if bp.sub is not None:
        return any(_nonempty(v) for v in values_of(bp, resource))
    a = bp.attribute
    elems = _elements(bp, resource)
    if a.is_complex:
        return any(_nonempty(_get(e, s.name)) for e in elems for s in a.sub_attributes)
    return any(_nonempty(e) for e in elems)


def evaluate(node: Node, resource: Any) -> bool:
    """Evaluate a bound filter on one resource dict (or, for a bound value filter, on one
    element dict). See the module docstring for the exact semantics."""
    if isinstance(node, And):
        return all(evaluate(o, resource) for o in node.operands)
    if isinstance(node, Or):
        return any(evaluate(o, resource) for o in node.operands)
    if isinstance(node, Not):
        return not evaluate(node.operand, resource)
    path = getattr(node, "path", None)
    if not isinstance(path, BoundPath):
        raise TypeError("evaluate() needs a bound filter: call bind(ast, resource_schema) first")
    if isinstance(node, Compare):
        vals = values_of(path, resource)
        if node.op == "ne":
            return not vals or any(not _match(path.target, "eq", node.value, v) for v in vals)
        return any(_match(path.target, node.op, node.value, v) for v in vals)
    if isinstance(node, Present):
        return _present(path, resource)
    if isinstance(node, ValueFilter):
        return bool(_elements(path, resource))
    raise TypeError(f"not a filter node: {node!r}")


def value_filter_template(node: Node) -> dict[str, Any] | None:
    """The element a bound value filter describes, for PATCH's "a value path that matches
    nothing creates the element" (Entra: `add phoneNumbers[type eq "mobile"].value`):
    `type eq "mobile" and primary eq true` -> {"type": "mobile", "primary": True} (canonical
    sub-attribute names, values as written; numbers as int/float, dateTimes as ISO text).
    None unless the filter is an eq comparison or a conjunction of them on sub-attributes."""
    out: dict[str, Any] = {}
    for c in node.operands if isinstance(node, And) else (node,):
        if not (isinstance(c, Compare) and c.op == "eq" and isinstance(c.path, BoundPath)
                and c.path.sub is None and c.path.value_filter is None):
            return None
        v: Any = c.value
        if isinstance(v, Decimal):
            v = int(v) if v == v.to_integral_value() else float(v)
        elif isinstance(v, datetime):
            v = v.isoformat().replace("+00:00", "Z")
        name = c.path.attribute.name
        if name in out and out[name] != v:
            return None
        out[name] = v
    return out


# ------------------------------------------------------------------------------------------
# Sorting (the in-memory twin of projections.scim_filter_sql.compile_sort)


def sort_target(resolved: ResolvedAttr) -> tuple[Attribute, Attribute | None]:
    """(attribute, sub) to sort by; a complex attribute sorts by its `value`."""
    a, sub = resolved.attribute, resolved.sub_attribute
    if sub is None and a.is_complex:
        sub = a.sub("value")
        if sub is None:
            raise FilterError(f"cannot sort by complex attribute {a.name!r}")
    if sub is not None and sub.multi_valued:
        raise FilterError(f"cannot sort by multi-valued sub-attribute {sub.name!r}")
    return a, sub


def sort_value(resolved: ResolvedAttr, resource: dict[str, Any]) -> Any:
    """The key sortBy uses for a resource, or None if missing (missing sorts last).

    Strings: casefolded unless caseExact (code point order); numbers: Decimal; booleans;
    dateTimes: aware datetime. Multi-valued: the value of the primary element, else the first
    element that has one (RFC 7644 §3.4.2.3)."""
    a, sub = sort_target(resolved)
    target = sub or a
    base: Any = resource
    for k in resolved.container:
        base = _get(base, k)
    val = _get(base, a.name)
    if a.multi_valued:
        elems = val if isinstance(val, list) else []
        cands = [(e, _get(e, sub.name) if sub is not None else e) for e in elems]
        cands = [(e, v) for e, v in cands if v is not None]
        if not cands:
            return None
        prim = [v for e, v in cands if sub is not None and _get(e, "primary") is True]
        v = prim[0] if prim else cands[0][1]
    else:
        v = _get(val, sub.name) if sub is not None else val
    return _sort_key(target, v)


def _sort_key(target: Attribute, v: Any) -> Any:
    t = target.type
    if v is None:
        return None
    if t in ("string", "reference", "binary"):
        if not isinstance(v, str):
            return None
        return v if target.case_exact else v.casefold()
    if t == "boolean":
        return v if isinstance(v, bool) else None
    if t in ("integer", "decimal"):
        return _num(v) if _is_number(v) else None
    if t == "dateTime":
        return parse_datetime(v)
    return None
