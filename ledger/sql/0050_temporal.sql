-- The temporal (bitemporal) projection of licence seats, see projections/temporal.py.
-- valid: the effective-time range the seat state holds; known: the tenant sequence range during which
-- the ledger believed it ([seq that made it known, seq that superseded it)). A correction closes the
-- old belief at its sequence and opens the corrected one, so a query at an earlier `known` still
-- sees the old belief.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE seat_intervals (
  tenant_id       text COLLATE "C" NOT NULL,
  pool_id         text COLLATE "C" NOT NULL,
  product_id      text COLLATE "C" NOT NULL,
  user_id         text COLLATE "C" NOT NULL,
  state           text COLLATE "C" NOT NULL,      -- active | suspended | waiting
  grants          text[] NOT NULL,
  priority        integer NOT NULL,
  overage         boolean NOT NULL,
  suspended_until timestamptz,
  valid           tstzrange NOT NULL,
  known           int8range NOT NULL,
  opened_seq      bigint NOT NULL,                -- the event that started this state
  opened_type     text COLLATE "C" NOT NULL,
  closed_seq      bigint,                         -- the event that ended it (NULL: still open)
  closed_type     text COLLATE "C",
  closed_reason   text COLLATE "C"
);
-- holders of a pool at (T, K)
CREATE INDEX seat_intervals_pool ON seat_intervals USING gist (tenant_id, pool_id, valid, known);
-- a user's licences / timeline, and the writer's lookup of a pair's open rows
CREATE INDEX seat_intervals_user ON seat_intervals (tenant_id, user_id, pool_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON seat_intervals TO seatledger_app;

-- per (pool, user): the sequences of its seat events (a backdated one refolds them) and the latest
-- effective instant among them (an event at or after it is folded incrementally)
CREATE TABLE temporal_pairs (
  tenant_id text COLLATE "C" NOT NULL,
  pool_id   text COLLATE "C" NOT NULL,
  user_id   text COLLATE "C" NOT NULL,
  seqs      bigint[] NOT NULL,
  last_eff  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, pool_id, user_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_pairs TO seatledger_app;

CREATE TABLE temporal_pools (
  tenant_id   text COLLATE "C" NOT NULL,
  pool_id     text COLLATE "C" NOT NULL,
  product_id  text COLLATE "C" NOT NULL,
  seats       integer NOT NULL,
  created_seq bigint NOT NULL,
  PRIMARY KEY (tenant_id, pool_id)
);
CREATE INDEX temporal_pools_product ON temporal_pools (tenant_id, product_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_pools TO seatledger_app;

-- pool term changes with their effective instant (resize / reprice / renew / cancel)
CREATE TABLE temporal_pool_changes (
  tenant_id    text COLLATE "C" NOT NULL,
  pool_id      text COLLATE "C" NOT NULL,
  seq          bigint NOT NULL,
  kind         text COLLATE "C" NOT NULL,
  effective_at timestamptz NOT NULL,
  value        jsonb,
  PRIMARY KEY (tenant_id, pool_id, seq)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_pool_changes TO seatledger_app;

-- knownAt given as a recorded time -> the last sequence recorded at or before it
CREATE TABLE temporal_marks (
  tenant_id   text COLLATE "C" NOT NULL,
  seq         bigint NOT NULL,
  recorded_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX temporal_marks_time ON temporal_marks (tenant_id, recorded_at, seq);
GRANT SELECT, INSERT, UPDATE, DELETE ON temporal_marks TO seatledger_app;
