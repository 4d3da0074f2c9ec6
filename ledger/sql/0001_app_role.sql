-- The role the service runs as. Roles are cluster-wide, so two databases migrating at once may race
-- to create it: both duplicate_object and unique_violation mean "it exists".
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'seatledger_app') THEN
    CREATE ROLE seatledger_app LOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
