-- Trigram indexes answer SCIM `co`/`ew` filters (LIKE '%x%') without scanning a tenant's users.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
