"""The temporal projection's rows derived in SQL from the events, for a rebuild's first part (up to H0).

Why: a rebuild's Python is its bottleneck, and PostgreSQL is idle while Python folds. Most (pool,
user) pairs are *simple*: their seat events come in effective order (each at or after the latest one
before it) and hold no correction. A simple pair's rows are what `temporal.Writer.apply_raw` makes
event by event, which set-based SQL can say directly:

* the key (state, grants, priority, overage, suspended_until) after each event is made of the last
  event of a few kinds before it (window aggregates over the pair in sequence order): the last
  *starter* (SeatAssigned/SeatQueued open a seat, SeatReleased/SeatDequeued/LicenceExpired end it; no
  starter or an ending one: no seat), the last grants setter (assigned, queued, grants changed) and
  the last state setter (assigned, queued, suspended, resumed) - `temporal.lean_key`, folded;
* an event whose key differs from the previous one opens an interval [eff, inf) believed from its
  sequence; the next change closes that belief at its sequence and, when it is later, believes the
  truncated interval [eff, next eff) from then on - `Writer.apply_raw`'s three rows.

The other pairs (a backdated event or a correction refolds them) are folded in Python by the Writer
in its lazy mode, which builds rows only for them (SQL makes rows for every pair; the caller replaces
those); `temporal_pairs` comes from SQL for every pair (`temporal_marks` from the fold). A ledger
whose seat events SQL cannot read as the lean fold does (an older schema version, a seat event before its pool was
created, a pool created twice) is folded wholly in Python: the lazy Writer notices (`unsafe`) and the
rebuild starts again. Hypothesis tests hold both ways to the same rows (tests/test_temporal_sql.py).
"""
from __future__ import annotations

from projections.temporal import SEAT_TYPES

# The tenant's seat events up to H0 ($2) and what each kind of event sets, as values whose maximum over
# the pair's events so far is the last event of that kind (PostgreSQL has no "last non-null" window):
# * start (opens or ends a seat) and st (sets its state): seq * 4 + a code, integers whose remainder
#   says what the event set - start: 0 ended, 1 assigned, 2 assigned as overage, 3 queued; st: 1
#   active, 2 waiting, 3 suspended;
# * gp (grants and priority) and su (a suspension's end): text prefixed by the sequence at a fixed width
#   of 19 digits (10^18 + seq: "C" order is sequence order), grants sorted and distinct as `lean_key`
#   makes them (one- and two-element arrays without a subquery) with the priority appended.
# Integers where they suffice: a text key is cut apart character by character (UTF-8), and the old
# all-text keys spent a second of a 1M-event rebuild doing that.
_SEAT_EVENTS = """
  SELECT e.pool_id, e.user_id, e.seq, e.eff, e.type, e.reason,
    CASE e.type WHEN 'SeatAssigned' THEN e.seq * 4 + CASE WHEN e.overage THEN 2 ELSE 1 END
                WHEN 'SeatQueued' THEN e.seq * 4 + 3
                WHEN 'SeatReleased' THEN e.seq * 4 WHEN 'SeatDequeued' THEN e.seq * 4
                WHEN 'LicenceExpired' THEN e.seq * 4 END AS start,
    CASE WHEN e.type IN ('SeatAssigned', 'SeatQueued', 'SeatGrantsChanged') THEN
      (1000000000000000000 + e.seq)::text || (CASE jsonb_array_length(e.g)
        WHEN 1 THEN ARRAY[e.g->>0]
        WHEN 2 THEN CASE WHEN (e.g->>0) COLLATE "C" < (e.g->>1) COLLATE "C" THEN ARRAY[e.g->>0, e.g->>1]
                         WHEN (e.g->>0) COLLATE "C" > (e.g->>1) COLLATE "C" THEN ARRAY[e.g->>1, e.g->>0]
                         ELSE ARRAY[e.g->>0] END
        ELSE ARRAY(SELECT DISTINCT x COLLATE "C" FROM jsonb_array_elements_text(e.g) AS x ORDER BY 1)
      END || e.priority::text)::text END COLLATE "C" AS gp,
    CASE e.type WHEN 'SeatAssigned' THEN e.seq * 4 + 1 WHEN 'SeatResumed' THEN e.seq * 4 + 1
                WHEN 'SeatQueued' THEN e.seq * 4 + 2 WHEN 'SeatSuspended' THEN e.seq * 4 + 3 END AS st,
    CASE WHEN e.type = 'SeatSuspended' THEN
      (1000000000000000000 + e.seq)::text || (e.until::timestamptz)::text END COLLATE "C" AS su
  FROM (
    SELECT substr(e.stream, 6) AS pool_id, (e.data->>'user_id') COLLATE "C" AS user_id, e.seq,
      e.effective_at AS eff, e.type, e.data->'grants' AS g,
      (e.data->>'priority')::int AS priority, coalesce((e.data->>'overage')::boolean, false) AS overage,
      e.data->>'until' AS until,
      CASE e.type WHEN 'LicenceExpired' THEN 'term_ended'
                  WHEN 'SeatReleased' THEN e.data->>'reason' WHEN 'SeatDequeued' THEN e.data->>'reason' END AS reason
    FROM events e
    WHERE e.tenant_id = $1 AND e.seq <= $2 AND e.stream >= 'pool-' AND e.stream < 'pool.'
      AND e.type = ANY($3::text[])
    OFFSET 0    -- each value once (not re-extracted from the document for every use)
  ) e
"""

# Every row of the tenant's pairs up to H0 (columns as temporal.INTERVAL_COLUMNS) into {intervals}, as
# `Writer.apply_raw` makes them for a pair whose events come in effective order with no correction
# (the caller replaces the rows of the other pairs), and every pair's seat event sequences and latest
# instant into {pairs}: one statement over one sort of the seat events.
# A key is four columns: state (1 active, 2 waiting, 3 suspended), the suspension's end as text, overage,
# grants and priority as an array's text; all NULL when there is no seat. $1 tenant, $2 H0, $3 seat
# types, $4 {pool: product} (a lookup, not a join: a new ledger has no planner statistics, and a join
# planned for one row runs per row).
WRITE = f"""
WITH run AS MATERIALIZED (   -- per event, in the pair's sequence order: the last events of each kind so far
  SELECT s.pool_id, s.user_id, s.seq, s.eff, s.type, s.reason,
    max(s.start) OVER w AS start, max(s.gp) OVER w AS gp, max(s.st) OVER w AS st, max(s.su) OVER w AS su,
    array_agg(s.seq) OVER w AS seqs, max(s.eff) OVER w AS last_eff, lead(s.seq) OVER w IS NULL AS last
  FROM ({_SEAT_EVENTS}) s
  WINDOW w AS (PARTITION BY s.pool_id, s.user_id ORDER BY s.seq ROWS UNBOUNDED PRECEDING)
),
pairs AS (
  INSERT INTO {{pairs}} (tenant_id, pool_id, user_id, seqs, last_eff)
  SELECT $1, pool_id, user_id, seqs, last_eff FROM run WHERE last
),
keyed AS (      -- temporal.lean_key as columns (all NULL: no seat): state, its end if suspended, overage, grants|priority
  SELECT pool_id, user_id, seq, eff, type, reason,
    CASE WHEN o THEN (st % 4)::int END AS ks,
    CASE WHEN o AND st % 4 = 3 THEN substr(su, 20) END AS ku,
    CASE WHEN o THEN start % 4 = 2 END AS kov,
    CASE WHEN o THEN substr(gp, 20) END AS kgp
  FROM (SELECT r.*, start % 4 > 0 AS o FROM run r OFFSET 0) r     -- o: a seat is open (computed once)
),
spans AS (      -- the events that change the key, each with the next one
  SELECT *, lead(seq) OVER p AS next_seq, lead(eff) OVER p AS next_eff, lead(type) OVER p AS next_type,
         lead(reason) OVER p AS next_reason
  FROM (
    SELECT k.*, (ks, ku, kov, kgp) IS DISTINCT FROM (lag(ks) OVER p, lag(ku) OVER p, lag(kov) OVER p, lag(kgp) OVER p)
      AS changed FROM keyed k
    WINDOW p AS (PARTITION BY pool_id, user_id ORDER BY seq)
  ) x WHERE changed
  WINDOW p AS (PARTITION BY pool_id, user_id ORDER BY seq)
),
opened AS (     -- grants and priority read back where a state opens
  SELECT s.*, s.kgp::text[] AS g FROM spans s WHERE ks IS NOT NULL
  OFFSET 0      -- read once per state: pulled up, it would be parsed again at every use in every row
)
INSERT INTO {{intervals}} (tenant_id, pool_id, product_id, user_id, state, grants, priority, overage,
  suspended_until, valid, known, opened_seq, opened_type, closed_seq, closed_type, closed_reason)
SELECT $1, s.pool_id, coalesce($4::jsonb->>s.pool_id, ''), s.user_id,
       CASE s.ks WHEN 1 THEN 'active' WHEN 2 THEN 'waiting' ELSE 'suspended' END,
       s.g[1:cardinality(s.g) - 1], s.g[cardinality(s.g)]::int, s.kov,
       s.ku::timestamptz,
       -- row 1: believed open-ended from its sequence until the next change (or still); row 2, when the
       -- next change is later: from then on, the state ended there (a state that lasted no time is dropped)
       CASE WHEN r = 1 THEN tstzrange(s.eff, NULL, '[)') ELSE tstzrange(s.eff, s.next_eff, '[)') END,
       CASE WHEN r = 1 THEN int8range(s.seq, s.next_seq, '[)') ELSE int8range(s.next_seq, NULL, '[)') END,
       s.seq, s.type,
       CASE WHEN r = 2 THEN s.next_seq END, CASE WHEN r = 2 THEN s.next_type END, CASE WHEN r = 2 THEN s.next_reason END
-- two rows per state where the next change is later: a VALUES list per row (a set-returning function
-- here would fill a tuplestore per row, about half a second of a 1M-event rebuild)
FROM opened s CROSS JOIN LATERAL (VALUES (1), (2)) AS v(r)
WHERE r = 1 OR (s.next_seq IS NOT NULL AND s.next_eff > s.eff)
-- no ORDER BY: the rows come in the windows' (pool, user) order already - the order of the indexes, which
-- then take them at about half the work - and a sort the planner cannot see is needed would cost more
"""

# each pool's product (its PoolCreated, through the partial index on pool-level events)
_PRODUCTS = """
SELECT coalesce(jsonb_object_agg(substr(stream, 6), data->>'product_id'), '{}')::text FROM events
WHERE tenant_id = $1 AND seq <= $2 AND stream >= 'pool-' AND stream < 'pool.' AND type = 'PoolCreated'
"""


def _seat_types() -> list[str]:
    return sorted(SEAT_TYPES)


async def write(conn, tenant: str, h0: int, prefix: str = "") -> str:
    """The simple pairs' intervals and every pair's row up to `h0` into `prefix` + seat_intervals and
    temporal_pairs (the live tables, or side tables shaped like them)."""
    sql = WRITE.replace("{pairs}", prefix + "temporal_pairs").replace("{intervals}", prefix + "seat_intervals")
    products = await conn.fetchval(_PRODUCTS, tenant, h0)
    return await conn.execute(sql, tenant, h0, _seat_types(), products)
