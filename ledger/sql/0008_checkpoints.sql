-- Catch-up subscribers' positions. Per-tenant readers store the tenant sequence; the all-tenant reader
-- stores the transaction horizon it has fully read below (xid8), see ledger/subscription.py.
CREATE TABLE checkpoints (
  subscriber text COLLATE "C" NOT NULL,
  tenant_id  text COLLATE "C" NOT NULL,   -- '*' for the all-tenant reader
  seq        bigint NOT NULL DEFAULT 0,
  horizon    xid8,                          -- all-tenant reader: window start ...
  window_end xid8,                          -- ... and end being read; seq = last position read in it
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscriber, tenant_id)
);
