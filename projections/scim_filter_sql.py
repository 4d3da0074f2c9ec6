"""Bound SCIM filters (ledger.scim.filter) compiled to parameterised PostgreSQL.

The projection table (created by the lead) has the shape

    scim_resources(tenant_id text, type text, id text, doc jsonb, doc_ci jsonb)

`doc` is the SCIM resource JSON (canonical key spelling, extension attributes under their URN
key); `doc_ci = casefold_doc(doc, resource_schema)` is the same document with every string value
of a caseExact=false attribute replaced by Python's `str.casefold()` (no SQL lower()/ILIKE: the
server has no ICU and a C locale). Values are never pasted into SQL: `compile_filter` appends them
to `params` and emits `$n`; comparison values of caseExact=false attributes are casefolded in
Python and compared against `doc_ci`.

The SQL has exactly the semantics of `ledger.scim.filter.evaluate` (see that module's docstring),
assuming documents whose values have the schema's JSON types (the writer validates them; in
particular dateTime values must be valid xsd:dateTime strings, or a comparison on them may raise
a cast error). The compiled expression may be NULL where `evaluate` says false: use it in WHERE
(or wrap it in COALESCE(..., false)); `not` is compiled as `NOT COALESCE(x, false)` so that
`not (x eq "y")` on a missing x is true.

Shapes emitted (so that expression indexes apply):
* single-valued string, eq: `(doc_ci->>'userName') = $1` (caseExact=false), or
  `(doc->>'externalId') = $1` (caseExact); sub-attributes `(doc_ci->'name'->>'givenName')`;
  extension attributes `(doc_ci->'urn:...:User'->>'department')`.
* sw / ew / co: `(doc_ci->>'userName') LIKE $1` with the pattern built in Python
  (`%`, `_` and `\\` escaped); gt/ge/lt/le: `(doc_ci->>'userName') COLLATE "C" > $1`
  (code point order, like Python's str comparison).
* multi-valued eq on a string (`emails.value eq "x"`, `emails eq "x"`,
  `emails[type eq "work"].value eq "x"`, `members.value eq "id"`, `members[value eq "id"]`):
  `doc_ci @> jsonb_build_object('emails', jsonb_build_array(jsonb_build_object('value', $1::text)))`
  (GIN-indexable containment); other multi-valued comparisons use
  `EXISTS (SELECT 1 FROM jsonb_array_elements(...) ...)`.
* sw / ew / co on `emails.value` (no value filter, >= 3 characters) add an index-usable superset
  before that EXISTS: `(scim_mv_text(doc_ci->'emails', 'value') LIKE '%x%' AND EXISTS (...))`,
  the element values joined (ledger/sql/0070_scim_emails_trgm.sql); same result, trigram index.

Indexes the projection should have (tenant and type first, as every query filters on them):

    -- eq (Entra/Okta existence checks) and uniqueness of userName per tenant
    CREATE UNIQUE INDEX scim_user_username ON scim_resources (tenant_id, (doc_ci->>'userName'))
        WHERE type = 'User';
    CREATE INDEX scim_res_externalid ON scim_resources (tenant_id, type, (doc->>'externalId'));
    CREATE INDEX scim_res_displayname ON scim_resources (tenant_id, type, (doc_ci->>'displayName'));
    -- co / ew (LIKE '%x%'), needs CREATE EXTENSION pg_trgm
    CREATE INDEX scim_res_username_trgm ON scim_resources
        USING gin ((doc_ci->>'userName') gin_trgm_ops);
    CREATE INDEX scim_res_displayname_trgm ON scim_resources
        USING gin ((doc_ci->>'displayName') gin_trgm_ops);
    -- co / sw / ew on emails.value (migration 0070): the values joined by an IMMUTABLE function;
    -- the compiler emits `scim_mv_text(doc_ci->'emails', 'value') LIKE $n AND EXISTS (...)`
    CREATE INDEX scim_res_emails_trgm ON scim_resources
        USING gin (scim_mv_text(doc_ci->'emails', 'value') gin_trgm_ops);
    -- multi-valued eq (emails.value, members.value, value paths) via containment
    CREATE INDEX scim_res_doc_ci_gin ON scim_resources USING gin (doc_ci jsonb_path_ops);
    -- sortBy=userName with stable pagination (compile_sort emits COLLATE "C" ... NULLS LAST);
    -- also sw (LIKE 'prefix%'): a C-collated btree serves a LIKE prefix as a range whatever the
    -- database collation (0070 dropped the former text_pattern_ops copy, scim_res_username_sw)
    CREATE INDEX scim_res_username_sort ON scim_resources
        (tenant_id, type, (doc_ci->>'userName') COLLATE "C", id);

The eq indexes must use the default collation (the emitted `= $1` has no COLLATE). LIKE with a
`$n` pattern uses the btree/trigram index when PostgreSQL plans with the parameter value (custom
plans, the default for the first executions and whenever cheaper). dateTime comparisons go
through a (non-immutable) text->timestamptz cast and are not indexable; `meta.lastModified`
sorting stays cheap only with a LIMIT (or index on a writer-normalised UTC text form).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.scim.filter import (
    DT_SQL_RE_LOCAL,
    DT_SQL_RE_OFFSET,
    ORDER_OPS,
    SUBSTRING_OPS,
    And,
    BoundPath,
    Compare,
    FilterError,
    Node,
    Not,
    Or,
    Present,
    ValueFilter,
    sort_target,
)
from ledger.scim.schema import Attribute, ResolvedAttr, casefold_doc

__all__ = ["compile_filter", "compile_sort", "casefold_doc", "like_escape", "sql_literal"]

_SQL_OP = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
# (keys, sub-attribute) of multi-valued attributes with a trigram index over their joined values
# (ledger/sql/0070_scim_emails_trgm.sql); sw/ew/co on them get an index-usable prefilter.
_MV_TEXT_INDEXED = frozenset({(("emails",), "value")})
_EMPTY = "('null'::jsonb, '\"\"'::jsonb)"


def sql_literal(s: str) -> str:
    """A standard SQL string literal (standard_conforming_strings=on, the default since 9.1)."""
    if "\x00" in s:
        raise ValueError("NUL in SQL literal")
    return "'" + s.replace("'", "''") + "'"


def like_escape(s: str) -> str:
    """Escape LIKE metacharacters (default escape character: backslash)."""
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ts(text_expr: str) -> str:
    """Text -> timestamptz for xsd:dateTime shaped values (offset-less = UTC), else NULL."""
    return (
        f"(CASE WHEN {text_expr} ~ {sql_literal(DT_SQL_RE_OFFSET)} THEN ({text_expr})::timestamptz"
        f" WHEN {text_expr} ~ {sql_literal(DT_SQL_RE_LOCAL)} THEN ({text_expr} || 'Z')::timestamptz"
        " END)"
    )


def _num(jsonb_expr: str) -> str:
    return f"(CASE WHEN jsonb_typeof({jsonb_expr}) = 'number' THEN ({jsonb_expr})::numeric END)"


def _keys(base: str, keys: tuple[str, ...]) -> str:
    return base + "".join(f"->{sql_literal(k)}" for k in keys)


@dataclass
class _Scalar:
    """How to read one value: as jsonb and as text."""

    jsonb: str
    text: str


class _Compiler:
    def __init__(self, params: list, doc: str, doc_ci: str):
        self.params = params
        self.doc = doc
        self.doc_ci = doc_ci
        self.n_alias = 0

    def p(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def alias(self) -> str:
        self.n_alias += 1
        return f"_e{self.n_alias}"

    # -- value sources
    def base_for(self, target: Attribute, doc: str, doc_ci: str) -> str:
        return doc_ci if (target.is_string and not target.case_exact) else doc

    def scalar(self, bp: BoundPath, doc: str, doc_ci: str) -> _Scalar:
        """Single-valued path (not elementwise)."""
        base = self.base_for(bp.target, doc, doc_ci)
        keys = bp.keys + ((bp.sub.name,) if bp.sub is not None else ())
        head, last = keys[:-1], keys[-1]
        return _Scalar(
            jsonb=f"({_keys(base, keys)})",
            text=f"({_keys(base, head)}->>{sql_literal(last)})",
        )

    def source(self, bp: BoundPath, doc_ci: str) -> tuple[str, list[str], str]:
        """(FROM item, WHERE conditions, element alias) for an elementwise path. Elements come
        from doc_ci: caseExact values are identical there, the others are folded."""
        a = self.alias()
        arr = _keys(doc_ci, bp.keys)
        conds: list[str] = []
        if bp.attribute.multi_valued:
            frm = f"jsonb_array_elements(CASE WHEN jsonb_typeof({arr}) = 'array' THEN {arr} END) AS {a}(v)"
        else:
            frm = f"(SELECT {arr} AS v) AS {a}"
            conds.append(f"jsonb_typeof({a}.v) <> 'null'")
        if bp.value_filter is not None:
            conds.append(self.node(bp.value_filter, f"{a}.v", f"{a}.v"))
        return frm, conds, a

    def element_scalar(self, bp: BoundPath, a: str) -> _Scalar:
        if bp.sub is not None:
            k = sql_literal(bp.sub.name)
            return _Scalar(jsonb=f"({a}.v->{k})", text=f"({a}.v->>{k})")
        return _Scalar(jsonb=f"{a}.v", text=f"({a}.v #>> '{{}}')")

    # -- comparisons
    def cmp(self, target: Attribute, op: str, c: Any, s: _Scalar) -> str:
        """SQL for `value op c` on one value (op != ne); NULL/false when it does not match."""
        t = target.type
        if t in ("string", "reference", "binary") or (t == "dateTime" and op in SUBSTRING_OPS):
            assert isinstance(c, str)
            if t != "dateTime" and not target.case_exact:
                c = c.casefold()
            if op == "eq":
                return f"{s.text} = {self.p(c)}"
            if op in SUBSTRING_OPS:
                e = like_escape(c)
                pattern = {"co": f"%{e}%", "sw": f"{e}%", "ew": f"%{e}"}[op]
                return f"{s.text} LIKE {self.p(pattern)}"
            return f'{s.text} COLLATE "C" {_SQL_OP[op]} {self.p(c)}'
        if t == "boolean":
            assert op == "eq" and isinstance(c, bool)
            return f"{s.jsonb} = to_jsonb({self.p(c)}::boolean)"
        if t in ("integer", "decimal"):
            assert isinstance(c, Decimal)
            return f"{_num(s.jsonb)} {_SQL_OP[op]} {self.p(c)}::numeric"
        if t == "dateTime":
            return f"{_ts(s.text)} {_SQL_OP[op]} {self.p(c)}::timestamptz"
        raise FilterError(f"cannot compare {t}")

    def containment(self, bp: BoundPath, value: Any, doc_ci: str) -> str | None:
        """`doc_ci @> {...}` (GIN-indexable) for a multi-valued attribute when the test is "some
        element has these exact strings": `emails.value eq "x"`, `tags eq "x"`,
        `emails[type eq "work"].value eq "x"`, `members[value eq "id"]` (value=None: a value
        filter without comparison). None if the filter has another shape."""
        if not bp.attribute.multi_valued:
            return None
        pairs: list[tuple[Attribute, Any]] = []
        if bp.value_filter is not None:
            f = bp.value_filter
            for c in f.operands if isinstance(f, And) else (f,):
                if not (isinstance(c, Compare) and c.op == "eq" and isinstance(c.path, BoundPath)
                        and not c.path.elementwise and c.path.sub is None
                        and c.path.target.is_string):
                    return None
                pairs.append((c.path.target, c.value))
        if value is not None:
            if not bp.target.is_string:
                return None
            if bp.sub is None:  # simple multi-valued: the element itself
                if bp.attribute.is_complex or pairs:
                    return None
                v = value if bp.target.case_exact else value.casefold()
                elem = f"{self.p(v)}::text"
            else:
                pairs.append((bp.sub, value))
        if value is None or bp.sub is not None:
            if not pairs:
                return None
            seen: dict[str, Any] = {}
            for attr, val in pairs:
                val = val if attr.case_exact else val.casefold()
                if seen.setdefault(attr.name, val) != val:
                    return None  # contradictory; EXISTS says false
            elem = "jsonb_build_object(" + ", ".join(
                f"{sql_literal(k)}, {self.p(v)}::text" for k, v in seen.items()
            ) + ")"
        inner = f"jsonb_build_array({elem})"
        for k in reversed(bp.keys):
            inner = f"jsonb_build_object({sql_literal(k)}, {inner})"
        return f"{doc_ci} @> {inner}"

    def compare(self, node: Compare, doc: str, doc_ci: str) -> str:
        bp = node.path
        assert isinstance(bp, BoundPath)
        target, op, c = bp.target, node.op, node.value
        if not bp.elementwise:
            s = self.scalar(bp, doc, doc_ci)
            if op == "ne":
                return f"NOT COALESCE({self.cmp(target, 'eq', c, s)}, false)"
            return self.cmp(target, op, c, s)
        if op == "eq":
            cont = self.containment(bp, c, doc_ci)
            if cont is not None:
                return cont
        frm, conds, a = self.source(bp, doc_ci)
        s = self.element_scalar(bp, a)
        if op == "ne":
            nonnull = f"jsonb_typeof({s.jsonb}) <> 'null'"
            where = " AND ".join(conds + [nonnull])
            differs = f"NOT COALESCE({self.cmp(target, 'eq', c, s)}, false)"
            return (
                f"(NOT EXISTS (SELECT 1 FROM {frm} WHERE {where})"
                f" OR EXISTS (SELECT 1 FROM {frm} WHERE {where} AND {differs}))"
            )
        where = " AND ".join(conds + [self.cmp(target, op, c, s)])
        exists = f"EXISTS (SELECT 1 FROM {frm} WHERE {where})"
        pre = self.mv_text_prefilter(bp, op, c, doc_ci)
        return f"({pre} AND {exists})" if pre else exists

    def mv_text_prefilter(self, bp: BoundPath, op: str, c: Any, doc_ci: str) -> str | None:
        """`scim_mv_text(doc_ci->'emails', 'value') LIKE '%x%'` for a sw/ew/co on a sub-attribute
        that has a trigram index over its joined values (_MV_TEXT_INDEXED, migration 0070): a
        superset of the matches (any element containing x makes the joined text contain x), so
        ANDed with the exact EXISTS it changes nothing but lets the index find the candidates."""
        if (op not in SUBSTRING_OPS or doc_ci != self.doc_ci or bp.sub is None
                or bp.value_filter is not None or not bp.sub.is_string or not isinstance(c, str)
                or (tuple(bp.keys), bp.sub.name) not in _MV_TEXT_INDEXED):
            return None
        if not bp.sub.case_exact:
            c = c.casefold()
        if len(c) < 3:      # no trigram to look up: the index cannot narrow anything
            return None
        arr = _keys(doc_ci, bp.keys)
        return f"scim_mv_text({arr}, {sql_literal(bp.sub.name)}) LIKE {self.p('%' + like_escape(c) + '%')}"

    def nonempty_complex(self, attr: Attribute, obj: str) -> str:
        return "(" + " OR ".join(
            f"({obj}->{sql_literal(sa.name)}) NOT IN {_EMPTY}" for sa in attr.sub_attributes
        ) + ")"

    def present(self, bp: BoundPath, doc: str, doc_ci: str) -> str:
        if not bp.elementwise:
            if bp.sub is None and bp.attribute.is_complex:
                return self.nonempty_complex(bp.attribute, _keys(doc, bp.keys))
            return f"{self.scalar(bp, doc, doc_ci).jsonb} NOT IN {_EMPTY}"
        frm, conds, a = self.source(bp, doc_ci)
        if bp.sub is not None:
            cond = f"({a}.v->{sql_literal(bp.sub.name)}) NOT IN {_EMPTY}"
        elif bp.attribute.is_complex:
            cond = self.nonempty_complex(bp.attribute, f"{a}.v")
        else:
            cond = f"{a}.v NOT IN {_EMPTY}"
        return f"EXISTS (SELECT 1 FROM {frm} WHERE {' AND '.join(conds + [cond])})"

    def node(self, node: Node, doc: str, doc_ci: str) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.node(o, doc, doc_ci) for o in node.operands) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(o, doc, doc_ci) for o in node.operands) + ")"
        if isinstance(node, Not):
            return f"NOT COALESCE({self.node(node.operand, doc, doc_ci)}, false)"
        path = getattr(node, "path", None)
        if not isinstance(path, BoundPath):
            raise TypeError("compile_filter() needs a bound filter: call bind() first")
        if isinstance(node, Compare):
            return self.compare(node, doc, doc_ci)
        if isinstance(node, Present):
            return self.present(path, doc, doc_ci)
        if isinstance(node, ValueFilter):
            cont = self.containment(path, None, doc_ci)
            if cont is not None:
                return cont
            frm, conds, _ = self.source(path, doc_ci)
            return f"EXISTS (SELECT 1 FROM {frm} WHERE {' AND '.join(conds)})"
        raise TypeError(f"not a filter node: {node!r}")


def compile_filter(bound_ast: Node, params: list, doc: str = "doc", doc_ci: str = "doc_ci") -> str:
    """A SQL boolean expression for a bound filter. Comparison values are appended to `params`
    and referenced as `$n` (n = len(params) after the append), typed for asyncpg: str (text),
    bool, Decimal (numeric), datetime (timestamptz). `doc`/`doc_ci` are the SQL expressions of
    the two jsonb columns (e.g. "r.doc"). May yield NULL where the evaluator says false."""
    return _Compiler(params, doc, doc_ci).node(bound_ast, doc, doc_ci)


def compile_sort(resolved_attr: ResolvedAttr, descending: bool = False, doc: str = "doc",
                 doc_ci: str = "doc_ci") -> str:
    """An ORDER BY item for sortBy (RFC 7644 §3.4.2.3), missing values last in both directions.

    Strings sort in code point order of the casefolded value (caseExact=false) or of the value;
    numbers numerically, booleans false < true, dateTimes as instants. A multi-valued attribute
    sorts by the value of its primary element, else of the first element having one; a complex
    attribute by its `value` sub-attribute. Append a unique key (e.g. `, id`) for stable pages.
    Raises FilterError (answer 400 invalidValue/invalidFilter) if the attribute cannot sort."""
    a, sub = sort_target(resolved_attr)
    target = sub or a
    direction = "DESC" if descending else "ASC"
    container = resolved_attr.container

    def key(jsonb_expr: str, text_expr: str) -> str:
        t = target.type
        if t in ("string", "reference", "binary"):
            return f'{text_expr} COLLATE "C"'
        if t == "boolean":
            return f"(CASE WHEN jsonb_typeof({jsonb_expr}) = 'boolean' THEN ({jsonb_expr})::boolean END)"
        if t in ("integer", "decimal"):
            return _num(jsonb_expr)
        if t == "dateTime":
            return _ts(text_expr)
        raise FilterError(f"cannot sort by {t} attribute {target.name!r}")

    if not a.multi_valued:
        base = doc_ci if (target.is_string and not target.case_exact) else doc
        keys = container + (a.name,) + ((sub.name,) if sub is not None else ())
        expr = key(f"({_keys(base, keys)})", f"({_keys(base, keys[:-1])}->>{sql_literal(keys[-1])})")
    else:
        arr = _keys(doc_ci, container + (a.name,))
        if sub is not None:
            k = sql_literal(sub.name)
            j, tx = f"(_s.v->{k})", f"(_s.v->>{k})"
            primary = "(CASE WHEN _s.v->'primary' = 'true'::jsonb THEN 0 ELSE 1 END), "
        else:
            j, tx = "_s.v", "(_s.v #>> '{}')"
            primary = ""
        expr = (
            f"(SELECT {key(j, tx)} FROM jsonb_array_elements(CASE WHEN jsonb_typeof({arr}) = 'array'"
            f" THEN {arr} END) WITH ORDINALITY AS _s(v, n) WHERE jsonb_typeof({j}) <> 'null'"
            f" ORDER BY {primary}_s.n LIMIT 1)"
        )
        if target.is_string:
            expr = f'{expr} COLLATE "C"'
    return f"{expr} {direction} NULLS LAST"
