-- The ledger. One row per event; never updated, never deleted (see 0003).
CREATE TABLE events (
  position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- global, may commit out of order
  tenant_id       text COLLATE "C" NOT NULL,
  seq             bigint NOT NULL,            -- gapless per tenant, assigned under the tenant lock
  stream          text COLLATE "C" NOT NULL,  -- e.g. user-<id>, pool-<id>
  stream_version  integer NOT NULL,
  type            text COLLATE "C" NOT NULL,
  schema_version  integer NOT NULL,
  data            jsonb NOT NULL,             -- personal fields only as ciphertext
  metadata        jsonb NOT NULL,             -- actor, source, request/correlation/causation ids
  effective_at    timestamptz NOT NULL,       -- when it takes effect in the world
  recorded_at     timestamptz NOT NULL,       -- when the ledger learned it (monotonic per tenant)
  idempotency_key text COLLATE "C",
  encoding        smallint NOT NULL,          -- version of the canonical encoding
  canonical       bytea NOT NULL,             -- the exact bytes that were hashed
  prev_hash       bytea NOT NULL,
  hash            bytea NOT NULL,             -- sha256(prev_hash || canonical)
  tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- for the all-tenant reader's horizon
  CONSTRAINT events_tenant_seq UNIQUE (tenant_id, seq),
  CONSTRAINT events_stream_version UNIQUE (tenant_id, stream, stream_version),
  CONSTRAINT events_seq_positive CHECK (seq > 0 AND stream_version > 0)
);
CREATE UNIQUE INDEX events_idempotency ON events (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_tx ON events (tx, position);
-- Audit queries by type/actor/time scan a tenant's sequence range; add narrower indexes only when
-- a benchmark shows the need (each costs every append).
