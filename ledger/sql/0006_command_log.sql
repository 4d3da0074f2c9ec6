-- Idempotency belongs to commands: a retried command with the same key returns this result.
CREATE TABLE command_log (
  tenant_id       text COLLATE "C" NOT NULL,
  idempotency_key text COLLATE "C" NOT NULL,
  result          jsonb,
  first_seq       bigint,
  recorded_at     timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, idempotency_key)
);
