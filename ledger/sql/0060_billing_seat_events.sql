-- Billing's narrow copy of the pool streams' seat events (see projections/billing_source.py): only
-- the columns an invoice needs, copied by a trigger in the append transaction itself, so it holds
-- exactly the committed events (nothing derived, nothing decided) and "known at K" is seq <= K.
-- Why: the events heap is wide (canonical bytes, jsonb), an invoice needs ~30 bytes per seat event,
-- and the planner cannot answer data->>'user_id' from an index alone. Append-only, like events.
CREATE TABLE billing_seat_events (
  tenant_id      text COLLATE "C" NOT NULL,
  pool_id        text COLLATE "C" NOT NULL,
  user_id        text COLLATE "C" NOT NULL,
  effective_at   timestamptz NOT NULL,
  seq            bigint NOT NULL,
  kind           smallint NOT NULL,          -- 0 assigned, 1 suspended, 2 resumed, 3 released, 4 expired
  schema_version integer NOT NULL,           -- an older one is re-read from events and upcast
  reason         text COLLATE "C",           -- SeatReleased.reason
  PRIMARY KEY (tenant_id, pool_id, user_id, effective_at, seq)
    INCLUDE (kind, schema_version, reason)   -- the per-user walk's order, answered by the index alone
);
GRANT SELECT ON billing_seat_events TO seatledger_app;

CREATE FUNCTION billing_copy_seat_event() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO billing_seat_events VALUES (
    NEW.tenant_id, substr(NEW.stream, 6), NEW.data->>'user_id', NEW.effective_at, NEW.seq,
    CASE NEW.type WHEN 'SeatAssigned' THEN 0 WHEN 'SeatSuspended' THEN 1 WHEN 'SeatResumed' THEN 2
                  WHEN 'SeatReleased' THEN 3 ELSE 4 END,
    NEW.schema_version, CASE WHEN NEW.type = 'SeatReleased' THEN NEW.data->>'reason' END);
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing_copy_seat_event() FROM PUBLIC;

CREATE TRIGGER events_billing_seat_events AFTER INSERT ON events FOR EACH ROW
  WHEN (NEW.stream >= 'pool-' AND NEW.stream < 'pool.'
        AND NEW.type IN ('SeatAssigned', 'SeatSuspended', 'SeatResumed', 'SeatReleased', 'LicenceExpired'))
  EXECUTE FUNCTION billing_copy_seat_event();

-- events recorded before this migration
INSERT INTO billing_seat_events
SELECT tenant_id, substr(stream, 6), data->>'user_id', effective_at, seq,
       CASE type WHEN 'SeatAssigned' THEN 0 WHEN 'SeatSuspended' THEN 1 WHEN 'SeatResumed' THEN 2
                 WHEN 'SeatReleased' THEN 3 ELSE 4 END,
       schema_version, CASE WHEN type = 'SeatReleased' THEN data->>'reason' END
FROM events
WHERE stream >= 'pool-' AND stream < 'pool.'
  AND type IN ('SeatAssigned', 'SeatSuspended', 'SeatResumed', 'SeatReleased', 'LicenceExpired');
