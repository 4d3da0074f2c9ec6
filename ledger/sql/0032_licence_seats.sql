-- Projection: who holds or waits for a seat of each pool now (ledger.licences.Seat).
CREATE TABLE licence_seats (
  tenant_id       text COLLATE "C" NOT NULL,
  pool_id         text COLLATE "C" NOT NULL,
  user_id         text COLLATE "C" NOT NULL,
  state           text COLLATE "C" NOT NULL CHECK (state IN ('active', 'waiting', 'suspended')),
  grants          text[] NOT NULL,
  priority        integer NOT NULL,
  since           timestamptz NOT NULL,
  requested_at    timestamptz NOT NULL,
  overage         boolean NOT NULL DEFAULT false,
  suspended_until timestamptz,
  ord             bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, pool_id, user_id)
);
CREATE INDEX licence_seats_user ON licence_seats (tenant_id, user_id);
CREATE INDEX licence_seats_waiting ON licence_seats (tenant_id, pool_id, priority, requested_at, user_id)
  WHERE state = 'waiting';

-- what a decision loads besides its users' seats: grace periods that ran out, the most recent seats
CREATE INDEX licence_seats_suspended ON licence_seats (tenant_id, suspended_until) WHERE state = 'suspended';
CREATE INDEX licence_seats_recent ON licence_seats (tenant_id, pool_id, ord DESC) WHERE state <> 'waiting';
GRANT SELECT, INSERT, UPDATE, DELETE ON licence_seats TO seatledger_app;
