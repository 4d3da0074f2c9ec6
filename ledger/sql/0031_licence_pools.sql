-- Projection: a pool's terms and their timeline of effective changes (ledger.licences.Terms).
CREATE TABLE licence_pools (
  tenant_id  text COLLATE "C" NOT NULL,
  pool_id    text COLLATE "C" NOT NULL,
  product_id text COLLATE "C" NOT NULL,
  terms      jsonb NOT NULL,
  counter    bigint NOT NULL DEFAULT 0,     -- assignment order counter (lifo downsizing)
  held       integer NOT NULL DEFAULT 0,    -- active + suspended seats, so a decision need not count them
  PRIMARY KEY (tenant_id, pool_id)
);
CREATE INDEX licence_pools_product ON licence_pools (tenant_id, product_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON licence_pools TO seatledger_app;
