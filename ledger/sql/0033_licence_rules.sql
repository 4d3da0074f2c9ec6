-- Projection: assignment rules per pool, and explicit admin grants.
CREATE TABLE licence_rules (
  tenant_id text COLLATE "C" NOT NULL,
  pool_id   text COLLATE "C" NOT NULL,
  rule_id   text COLLATE "C" NOT NULL,
  priority  integer NOT NULL,
  kind      text COLLATE "C" NOT NULL CHECK (kind IN ('all_active', 'group', 'filter', 'entitlement')),
  group_id  text COLLATE "C",
  filter    text,
  PRIMARY KEY (tenant_id, pool_id, rule_id)
);
CREATE TABLE licence_admin_grants (
  tenant_id text COLLATE "C" NOT NULL,
  pool_id   text COLLATE "C" NOT NULL,
  user_id   text COLLATE "C" NOT NULL,
  PRIMARY KEY (tenant_id, pool_id, user_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON licence_rules, licence_admin_grants TO seatledger_app;
