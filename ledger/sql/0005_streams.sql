-- Current version of each stream, for optimistic concurrency (expected version) without scanning events.
CREATE TABLE streams (
  tenant_id text COLLATE "C" NOT NULL,
  stream    text COLLATE "C" NOT NULL,
  version   integer NOT NULL,
  PRIMARY KEY (tenant_id, stream)
);
