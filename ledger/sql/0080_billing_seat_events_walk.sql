-- billing_seat_events keyed in the order the invoice query reads it: each (pool, user)'s events newest
-- first. Billing a period keeps a user's events after their last release effective before the period
-- (projections/billing_source.py); newest first, that is a running count of such releases that is
-- still 0, which PostgreSQL evaluates as the index is read (a WindowAgg run condition: ~40% less
-- server time at 1M events than counting the releases that follow each row, which needs each
-- partition spooled whole). The same rows and columns as the primary key of 0060, which this
-- replaces (one index per appended seat event, as before; a unique index since a key cannot have
-- descending columns).
CREATE UNIQUE INDEX billing_seat_events_walk
  ON billing_seat_events (tenant_id, pool_id, user_id, effective_at DESC, seq DESC)
  INCLUDE (kind, schema_version, reason);
ALTER TABLE billing_seat_events DROP CONSTRAINT billing_seat_events_pkey;
