"""A rebuilt table against its live one, in SQL: digest, differing rows, and the swap of just those.

The rebuilt rows are COPYed into a temporary table (`rb_<table>`, dropped at commit) shaped like the
live one; both are compared on the stored columns (generated ones derive from them):
* the digest is order-free: the row count and the sum of a 64-bit hash of each row
  (`hash_record_extended`, no text conversion) - equal digests, equal tables;
* when they differ, the rows of each side missing from the other (EXCEPT ALL) are joined on the
  table's key, so a difference reads {key, live, rebuilt} (None: the row exists on one side only);
* unless `check`, the swap deletes the live rows that differ and inserts the rebuilt ones, in the
  caller's transaction: nothing half-built is ever visible, and an unchanged row is not rewritten.
A live table with no row for the tenant (never projected) takes the rebuilt rows in the order of its
key - by one INSERT ... SELECT from the side table, or (`compare_swap`) by a COPY straight into it:
a bulk load in the order of the indexes costs PostgreSQL about half the index work of the same rows
in fold order (the sort itself is cheap beside it).
Staging (`stage`, `restage`) and comparing (`compare_staged`) are separate steps so that a caller can
stage outside a lock and compare and swap under it (projections/rebuild.py).
"""
from __future__ import annotations

import hashlib
from operator import itemgetter
from dataclasses import dataclass, field

import orjson

MAX_REPORTED = 1000
_EMPTY = "0:0"
PG_EPOCH_US = 946_684_800_000_000      # 2000-01-01 in Unix microseconds: PostgreSQL's epoch


@dataclass
class TableReport:
    table: str
    live_rows: int
    rebuilt_rows: int
    live_digest: str
    rebuilt_digest: str
    differences: list[dict] = field(default_factory=list)
    more: int = 0

    @property
    def ok(self) -> bool:
        return self.live_digest == self.rebuilt_digest


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]          # identify a row within a tenant
    values: tuple[str, ...]        # the other stored columns
    order: str | None = None       # insertion order of a bulk load (the reading index's)
    column_order: tuple[str, ...] | None = None    # of the records, when not (tenant, keys, values)
    # the records' timestamptz values are (microseconds since 2000-01-01,) tuples, which COPY sends as
    # they are (asyncpg's tuple format) instead of taking a datetime apart per value
    micros: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.column_order or ("tenant_id", *self.keys, *self.values)

    def sorted(self, records: list[tuple]) -> list[tuple]:
        """`records` in about key order (only the index work depends on it). Two text keys sort as one
        string joined by NUL (no text value holds one): a string compare is far cheaper than a tuple's;
        code point order is the order of COLLATE "C"."""
        if len(records) < 1000:
            return records
        idx = [self.columns.index(k) for k in (self.order.replace(" ", "").split(",") if self.order else self.keys)]
        if len(idx) == 2 and all(isinstance(records[0][i], str) for i in idx):
            a, b = idx
            return sorted(records, key=lambda r: r[a] + "\0" + r[b])
        return sorted(records, key=itemgetter(*idx))


def _digest_sql(cols: tuple[str, ...], src: str) -> str:
    row = ", ".join(f"t.{c}" for c in cols)
    return (f"SELECT count(*) AS n, count(*)::text || ':' || "
            f"coalesce(sum(hash_record_extended(ROW({row}), 0)), 0)::text AS d FROM {src} t")


def _short(d: str) -> str:
    """A digest to print: the row count and 48 bits of a hash of the sum."""
    return d if d == _EMPTY else d.split(":")[0] + ":" + hashlib.sha256(d.encode()).hexdigest()[:12]


def _plain(v):
    """A column value as JSON would show it (times ISO, ranges [lower, upper], jsonb text parsed)."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "upper_inf"):                 # asyncpg Range
        return [_plain(v.lower), None if v.upper_inf else _plain(v.upper)]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, str) and v[:1] in ("{", "["):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def _rows_only(table: Table, records: list[tuple], side: str) -> list[dict]:
    out = []
    for r in records[:MAX_REPORTED]:
        row = dict(zip(table.columns, r))
        vals = [_plain(row[v]) for v in table.values]
        out.append({"key": {k: _plain(row[k]) for k in table.keys}, "live": vals if side == "live" else None,
                    "rebuilt": vals if side == "rebuilt" else None})
    return out


def _side(table: Table) -> str:
    return f"rb_{table.name}"


async def _copy(conn, target: str, table: Table, records) -> None:
    """COPY `records` into `target` (shaped like `table`)."""
    if not table.micros:
        await conn.copy_records_to_table(target, records=records, columns=table.columns)
        return
    # for this COPY only: a time is sent as the tuple it already is (no other query runs on the
    # connection meanwhile: the caller awaits it)
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=tuple, decoder=_no_decode, format="tuple")
    try:
        await conn.copy_records_to_table(target, records=records, columns=table.columns)
    finally:
        await conn.reset_type_codec("timestamptz", schema="pg_catalog")


def _no_decode(v):
    raise AssertionError("the COPY codec of times only encodes")


async def stage(conn, table: Table, records: list[tuple]) -> None:
    """The rebuilt rows into the side table `rb_<table>` (temporary, dropped at commit)."""
    side = _side(table)
    await conn.execute(f"DROP TABLE IF EXISTS {side}")
    await conn.execute(f"CREATE TEMP TABLE {side} (LIKE {table.name} INCLUDING GENERATED) ON COMMIT DROP")
    if records:     # unsorted: the side table has no index, the swap's INSERT ... SELECT sorts
        await _copy(conn, side, table, records)


async def restage(conn, table: Table, where: str | None, args: list, records: list[tuple]) -> None:
    """Replace the staged rows matching `where` (on the side table's columns, parameters $1...; None:
    none) by `records` - the rows of a scope refolded after staging."""
    if where:
        await conn.execute(f"DELETE FROM {_side(table)} WHERE {where}", *args)
    if records:
        await _copy(conn, _side(table), table, records)


async def empty_tables(conn, tenant: str, tables) -> set[str]:
    """The names of `tables` that hold no row of `tenant` (one query)."""
    sql = " UNION ALL ".join(f"SELECT '{t.name}' AS t WHERE NOT EXISTS (SELECT 1 FROM {t.name} WHERE tenant_id = $1)"
                             for t in tables)
    return {r["t"] for r in await conn.fetch(sql, tenant)}


async def copy_in_key_order(conn, target: str, table: Table, records: list[tuple], ordered: bool = True) -> None:
    """`records` COPYed into `target` (the table itself, or a table shaped like it) in key order: the
    order of its indexes, half their work of the same rows in fold order (`ordered` False: a table
    without indexes, which gains nothing from the sort)."""
    if records:
        await _copy(conn, target, table, table.sorted(records) if ordered else records)


async def compare_swap(conn, tenant: str, table: Table, records: list[tuple], *, check: bool,
                       ordered: bool = True) -> TableReport:
    """`stage` and `compare_staged` in one, except that a live table with no row for the tenant takes
    `records` by one COPY in key order straight into it (invisible until commit, no side table);
    `ordered` False: in any order (its indexes are built after the load)."""
    if not check and await empty_tables(conn, tenant, [table]):
        await copy_in_key_order(conn, table.name, table, records, ordered)
        return await filled_report(conn, tenant, table)
    await stage(conn, table, records)
    return await compare_staged(conn, tenant, table, check=check)


async def compare_staged(conn, tenant: str, table: Table, *, check: bool) -> TableReport:
    """Compare the rows `stage` put aside with the live rows and swap the differences unless `check`.
    In the caller's transaction (the one that staged them)."""
    name, side = table.name, _side(table)
    live_n = await conn.fetchval(f"SELECT count(*) FROM {name} WHERE tenant_id = $1", tenant)
    if live_n == 0 and not check:
        c = ", ".join(table.columns)
        await conn.execute(f"INSERT INTO {name} ({c}) SELECT {c} FROM {side} "
                           f"ORDER BY {table.order or ', '.join(table.keys)}")
        return await filled_report(conn, tenant, table)
    return await _compare(conn, tenant, table, live_n, check)


FIRST_BUILD = "first build"     # the rebuilt digest of a table that was empty: nothing to compare it with


async def filled_report(conn, tenant: str, table: Table) -> TableReport:
    """The report of a live table that was empty and took every rebuilt row (the first ones read: every
    row is new, and ordering a million of them to show a thousand is not worth a sort). Its rows are
    counted, not hashed: a digest is for comparing, the live side is empty, and hashing every row of a
    first build cost about a tenth of a 1M-event rebuild (`--check` later hashes both sides)."""
    n = await conn.fetchval(f"SELECT count(*) FROM {table.name} WHERE tenant_id = $1", tenant)
    rep = TableReport(table.name, 0, n, _EMPTY, f"{n}:{FIRST_BUILD}" if n else _EMPTY)
    first = await conn.fetch(f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE tenant_id = $1 "
                             f"LIMIT {MAX_REPORTED}", tenant)
    rep.differences = _rows_only(table, [tuple(r) for r in first], "rebuilt")
    rep.more = max(0, n - MAX_REPORTED)
    return rep


async def _compare(conn, tenant: str, table: Table, live_n: int, check: bool) -> TableReport:
    cols, name, side = table.columns, table.name, _side(table)
    live = f"(SELECT * FROM {name} WHERE tenant_id = $1)"
    a = await conn.fetchrow(_digest_sql(cols, live), tenant)
    b = await conn.fetchrow(_digest_sql(cols, side))
    rep = TableReport(name, a["n"], b["n"], _short(a["d"]), _short(b["d"]))
    if a["d"] == b["d"]:
        return rep
    c, keys = ", ".join(cols), ", ".join(table.keys)
    only_live = f"SELECT {c} FROM {name} WHERE tenant_id = $1 EXCEPT ALL SELECT {c} FROM {side}"
    only_rb = f"SELECT {c} FROM {side} EXCEPT ALL SELECT {c} FROM {name} WHERE tenant_id = $1"
    joined = f"FROM ({only_live}) l FULL JOIN ({only_rb}) r USING ({keys})"
    rows = await conn.fetch(f"SELECT {keys}, to_jsonb(l) AS live, to_jsonb(r) AS rebuilt {joined} "
                            f"ORDER BY {keys} LIMIT {MAX_REPORTED + 1}", tenant)

    def values(j):
        if j is None:
            return None
        d = orjson.loads(j)
        return [d.get(v) for v in table.values]

    for r in rows[:MAX_REPORTED]:
        rep.differences.append({"key": {k: _plain(r[k]) for k in table.keys}, "live": values(r["live"]),
                                "rebuilt": values(r["rebuilt"])})
    if len(rows) > MAX_REPORTED:
        rep.more = await conn.fetchval(f"SELECT count(*) {joined}", tenant) - MAX_REPORTED
    if not check:
        cond = " AND ".join(f"t.{k} = d.{k}" for k in table.keys)
        await conn.execute(f"DELETE FROM {name} t USING ({only_live}) d WHERE t.tenant_id = $1 AND {cond}", tenant)
        order = f" ORDER BY {table.order}" if table.order else ""
        await conn.execute(f"INSERT INTO {name} ({c}) SELECT {c} FROM ({only_rb}) d{order}", tenant)
    return rep
