-- Group membership, one row per (group, member): adding or removing members costs O(change), and
-- a user's `groups` attribute is an index lookup on member_id.
CREATE TABLE group_members (
  tenant_id   text COLLATE "C" NOT NULL,
  group_id    text COLLATE "C" NOT NULL,
  member_id   text COLLATE "C" NOT NULL,
  member_type text COLLATE "C" NOT NULL,         -- 'User' | 'Group'
  PRIMARY KEY (tenant_id, group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (tenant_id, member_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON group_members TO seatledger_app;
