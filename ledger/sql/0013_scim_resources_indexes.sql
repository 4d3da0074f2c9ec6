-- The indexes projections/scim_filter_sql.py's emitted SQL is shaped for (tenant and type first).
-- userName is unique per tenant case-insensitively: the decider checks it under the tenant lock,
-- this index is the guard.
CREATE UNIQUE INDEX scim_user_username ON scim_resources (tenant_id, (doc_ci->>'userName'))
    WHERE type = 'User';
CREATE INDEX scim_res_externalid ON scim_resources (tenant_id, type, (doc->>'externalId'));
CREATE INDEX scim_res_displayname ON scim_resources (tenant_id, type, (doc_ci->>'displayName'));
CREATE INDEX scim_res_username_sw ON scim_resources
    (tenant_id, type, (doc_ci->>'userName') text_pattern_ops);
CREATE INDEX scim_res_username_trgm ON scim_resources
    USING gin ((doc_ci->>'userName') gin_trgm_ops);
CREATE INDEX scim_res_displayname_trgm ON scim_resources
    USING gin ((doc_ci->>'displayName') gin_trgm_ops);
CREATE INDEX scim_res_doc_ci_gin ON scim_resources USING gin (doc_ci jsonb_path_ops);
CREATE INDEX scim_res_username_sort ON scim_resources
    (tenant_id, type, (doc_ci->>'userName') COLLATE "C", id);
-- default list order (no sortBy): by id, stable between pages
CREATE INDEX scim_res_type_id ON scim_resources (tenant_id, type, id);
