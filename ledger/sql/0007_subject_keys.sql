-- Per (tenant, subject) data keys for the personal-data envelope. Outside the hash chain on purpose:
-- erasure deletes the key, the ciphertext in events stays, the chain still verifies.
CREATE TABLE subject_keys (
  tenant_id  text COLLATE "C" NOT NULL,
  subject    text COLLATE "C" NOT NULL,
  key        bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, subject)
);
CREATE TABLE erasures (
  tenant_id  text COLLATE "C" NOT NULL,
  subject    text COLLATE "C" NOT NULL,
  erased_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, subject)
);
