-- One row per tenant: the head of its chain. Writers lock it (FOR UPDATE, transaction-scoped) to
-- serialize a tenant's appends across processes; it yields the previous sequence, hash and time.
CREATE TABLE tenant_heads (
  tenant_id   text COLLATE "C" PRIMARY KEY,
  seq         bigint NOT NULL DEFAULT 0,
  hash        bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  recorded_at timestamptz NOT NULL DEFAULT '-infinity'
);
