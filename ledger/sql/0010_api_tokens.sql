-- Projection of TokenIssued/TokenRevoked: bearer tokens, stored only as SHA-256 of the secret.
-- last_used_at is operational state (not a ledger fact), updated by the auth middleware.
CREATE TABLE api_tokens (
  token_id     text COLLATE "C" PRIMARY KEY,
  tenant_id    text COLLATE "C" NOT NULL,
  scope        text COLLATE "C" NOT NULL,
  secret_hash  bytea NOT NULL,
  label        text,
  created_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  last_used_at timestamptz
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
GRANT SELECT, INSERT, UPDATE ON api_tokens TO seatledger_app;
