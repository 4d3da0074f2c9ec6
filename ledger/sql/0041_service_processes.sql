-- Live service processes (api/ratelimit.py heartbeats): the per-tenant rate is divided among them.
-- Unlogged: ephemeral by nature, and a heartbeat should cost no WAL flush.
CREATE UNLOGGED TABLE service_processes (
  process_id  text COLLATE "C" PRIMARY KEY,
  seen_at     timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON service_processes TO seatledger_app;
