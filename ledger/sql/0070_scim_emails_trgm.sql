-- `emails.value co "x"` (and sw/ew) without scanning a tenant's users: a trigram index over the
-- email values of each resource, joined into one text (projections/scim_filter_sql.py emits
-- `scim_mv_text(doc_ci->'emails', 'value') LIKE '%x%'` as an index-usable prefilter, ANDed with the
-- exact per-element EXISTS, so the result is unchanged: every element containing x makes the joined
-- text contain x, and the EXISTS rechecks each candidate).
-- The function must stay exactly this expression for the index to apply (and be IMMUTABLE).
CREATE FUNCTION scim_mv_text(arr jsonb, sub text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT string_agg(e->>sub, E'\n')
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(arr) = 'array' THEN arr END) AS e $$;
CREATE INDEX scim_res_emails_trgm ON scim_resources
    USING gin (scim_mv_text(doc_ci->'emails', 'value') gin_trgm_ops);
-- `userName sw` (LIKE 'prefix%') is answered by scim_res_username_sort: its key is COLLATE "C", and
-- PostgreSQL turns a LIKE prefix into a range on a C-collated btree whatever the database
-- collation. The text_pattern_ops copy only cost every write an extra btree insertion.
DROP INDEX IF EXISTS scim_res_username_sw;
