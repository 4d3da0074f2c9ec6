-- Inline projection of the directory (users and groups): the SCIM document as served, without the
-- parts assembled at read time (Group members and User groups come from group_members, so a
-- membership change never rewrites a large jsonb). doc_ci = casefold_doc(doc): the SQL filter
-- compiler compares caseExact=false attributes there (see projections/scim_filter_sql.py).
-- version = the resource stream's version (meta.version / ETag).
CREATE TABLE scim_resources (
  tenant_id     text COLLATE "C" NOT NULL,
  id            text COLLATE "C" NOT NULL,
  type          text COLLATE "C" NOT NULL,       -- 'User' | 'Group'
  doc           jsonb NOT NULL,
  doc_ci        jsonb NOT NULL,
  version       integer NOT NULL,
  created       timestamptz NOT NULL,
  last_modified timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON scim_resources TO seatledger_app;
