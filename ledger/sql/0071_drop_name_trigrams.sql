-- Trigram indexes on userName/displayName served only `co`/`ew` on those attributes (sw uses the
-- C-collated btree), yet the planner also picks them for the write path's equality lookups
-- (userName uniqueness, displayName) when statistics are stale - and a GIN's pending list makes
-- those lookups grow with the table until it is cleaned (seen: 14 ms per batch at 30k users with
-- autovacuum off). Equality must always go to the btrees; `co` on names falls back to a scan.
DROP INDEX IF EXISTS scim_res_username_trgm;
DROP INDEX IF EXISTS scim_res_displayname_trgm;
