-- `seatledger rebuild` repairs scim_extensions like the other projections it rebuilds: a corrupted or
-- stray row is replaced, which takes UPDATE and DELETE (the service itself only ever inserts).
GRANT UPDATE, DELETE ON scim_extensions TO seatledger_app;
