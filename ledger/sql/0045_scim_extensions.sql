-- Projection of ScimExtensionRegistered: a tenant's custom SCIM schema extensions (RFC 7643 §7
-- documents, normalised), in registration order (seq: the event's tenant sequence number, which
-- also versions the service's in-process schema cache).
CREATE TABLE scim_extensions (
  tenant_id     text COLLATE "C" NOT NULL,
  schema_id     text COLLATE "C" NOT NULL,
  resource_type text COLLATE "C" NOT NULL,
  required      boolean NOT NULL DEFAULT false,
  definition    jsonb NOT NULL,
  registered_at timestamptz NOT NULL,
  seq           bigint NOT NULL,
  PRIMARY KEY (tenant_id, schema_id)
);
-- schema URNs are compared case-insensitively (RFC 7643 §3.3, as ResourceSchema.resolve does)
CREATE UNIQUE INDEX scim_extensions_ci ON scim_extensions (tenant_id, lower(schema_id));
GRANT SELECT, INSERT ON scim_extensions TO seatledger_app;
