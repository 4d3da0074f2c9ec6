-- Failed-request log (api/failed_requests.py): rejected SCIM requests (4xx) per tenant, for the
-- tenant's admin. Operational state, not a ledger fact: no bodies and no personal values (details
-- are redacted before they get here), bounded to the newest rows per tenant by the writer.
CREATE TABLE scim_failures (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id   text COLLATE "C" NOT NULL,
  at          timestamptz NOT NULL,
  method      text NOT NULL,
  path        text NOT NULL,
  status      smallint NOT NULL,
  scim_type   text,
  detail      text NOT NULL,
  request_id  text NOT NULL
);
CREATE INDEX scim_failures_tenant_seq ON scim_failures (tenant_id, seq DESC);
GRANT SELECT, INSERT, DELETE ON scim_failures TO seatledger_app;
