-- The app role appends and reads events, nothing else; the other tables are working state.
REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO seatledger_app;
GRANT SELECT, INSERT, UPDATE ON tenant_heads TO seatledger_app;
GRANT SELECT, INSERT ON command_log TO seatledger_app;
GRANT SELECT, INSERT, DELETE ON subject_keys TO seatledger_app;
GRANT SELECT, INSERT ON erasures TO seatledger_app;
GRANT SELECT, INSERT, UPDATE ON checkpoints TO seatledger_app;
