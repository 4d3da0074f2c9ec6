-- Fast point-in-time reads of seat_intervals (issue 5 benchmark). The range operators (@>) cost a
-- function call per row and GiST range searches visit many nodes, so the bounds are also kept as plain
-- scalar columns (generated: always equal to the ranges) that btree indexes carry and index-only scans
-- compare cheaply:  valid @> T  <=>  valid_from <= T AND valid_to > T  (ranges are [) , an open end is
-- infinity);  known @> K  <=>  known_from <= K AND known_to > K.
ALTER TABLE seat_intervals
  ADD COLUMN valid_from timestamptz GENERATED ALWAYS AS (lower(valid)) STORED,
  ADD COLUMN valid_to   timestamptz GENERATED ALWAYS AS (coalesce(upper(valid), 'infinity'::timestamptz)) STORED,
  ADD COLUMN known_from bigint GENERATED ALWAYS AS (lower(known)) STORED,
  ADD COLUMN known_to   bigint GENERATED ALWAYS AS (coalesce(upper(known), 9223372036854775807)) STORED;

-- holders of a pool at (T, K), a page in (user, pool) order: an index-only scan in user order carrying
-- everything a page returns (the held rows only: waiting users are counted apart)
CREATE INDEX seat_intervals_holders ON seat_intervals (tenant_id, pool_id, user_id)
  INCLUDE (valid_from, valid_to, known_from, known_to, state, product_id, grants, priority, overage,
           suspended_until, valid, opened_seq)
  WHERE state <> 'waiting';
-- counts per pool at (T, K) (holders total, usage): index-only over the rows started by T
CREATE INDEX seat_intervals_at ON seat_intervals (tenant_id, pool_id, valid_from)
  INCLUDE (valid_to, known_from, known_to, state);
-- the GiST on ranges is superseded by the two above (and costs every write)
DROP INDEX IF EXISTS seat_intervals_pool;
