-- Billing reads each pool's terms from its pool-level events as known at a sequence
-- (projections/billing_source.py, _POOL_SQL): a few rows among a tenant's million events, which
-- otherwise cost a sequential scan of the whole events table (0.6 s of a 1M-event invoice).
-- Partial: only those events are indexed, so appending any other event costs one predicate test.
-- The query repeats this predicate literally, so that every plan (generic ones too) can use it.
CREATE INDEX events_pool_terms ON events (tenant_id, seq)
  WHERE stream >= 'pool-' AND stream < 'pool.'
    AND type IN ('PoolCreated', 'PoolResized', 'PoolRepriced', 'PoolRenewed', 'PoolCancelled');
