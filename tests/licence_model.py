"""An independent model of what the licence rules demand, for the stateful test.

It knows nothing of the engine: it keeps its own copy of the directory (as the test drove it over
SCIM), the rules and the admin grants, and says which grants each user should hold on each pool.
Filter rules are a fixed menu, each with its SCIM text and a hand-written Python predicate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ADMIN = "admin"
ADMIN_PRIORITY = 0
NO_RULE_PRIORITY = 100


def _ci(v: str | None) -> str | None:
    return v.casefold() if isinstance(v, str) else None


@dataclass
class User:
    id: str
    user_name: str
    active: bool = True
    dept: str | None = None
    title: str | None = None
    ents: frozenset[str] = frozenset()


# key -> (SCIM filter, predicate on a model User). String attributes compare case-insensitively
# (caseExact false); `ne` and `not` are true on an absent attribute.
FILTERS = {
    "dept-design": (f'{ENT}:department eq "Design"', lambda u: _ci(u.dept) == "design"),
    "dept-not-sales": (f'{ENT}:department ne "Sales"', lambda u: _ci(u.dept) != "sales"),
    "title-eng": ('title sw "eng"', lambda u: (_ci(u.title) or "").startswith("eng")),
    "no-title-or-design": (f'not (title pr) or {ENT}:department eq "design"',
                           lambda u: u.title is None or _ci(u.dept) == "design"),
}


@dataclass
class RuleM:
    rule_id: str
    priority: int
    kind: str                       # all_active | group | filter | entitlement
    group_id: str | None = None
    filter_key: str | None = None


@dataclass
class Model:
    pool_product: dict[str, str]
    users: dict[str, User] = field(default_factory=dict)          # live users
    deleted: list[str] = field(default_factory=list)              # in deletion order
    groups: dict[str, set[str]] = field(default_factory=dict)     # live groups -> direct user members
    dead_groups: list[str] = field(default_factory=list)
    rules: dict[str, dict[str, RuleM]] = field(default_factory=dict)
    admin: set[tuple[str, str]] = field(default_factory=set)      # (pool, user)

    def matches(self, r: RuleM, u: User, pool: str) -> bool:
        if r.kind == "all_active":
            return True                 # deactivation is the decider's business, not the rule's
        if r.kind == "group":
            return r.group_id in self.groups and u.id in self.groups[r.group_id]
        if r.kind == "entitlement":
            return self.pool_product[pool] in u.ents
        if r.kind == "filter":
            return FILTERS[r.filter_key][1](u)
        raise AssertionError(r.kind)

    def grants(self, pool: str, uid: str) -> tuple[frozenset[str], int]:
        """(grants, priority) the rules and admin grants give this live user on this pool."""
        u = self.users[uid]
        g, prio = set(), []
        for r in self.rules.get(pool, {}).values():
            if self.matches(r, u, pool):
                g.add(r.rule_id)
                prio.append(r.priority)
        if (pool, uid) in self.admin:
            g.add(ADMIN)
            prio.append(ADMIN_PRIORITY)
        return frozenset(g), min(prio, default=NO_RULE_PRIORITY)

    def admin_grants(self) -> list[tuple[str, str]]:
        """In a reproducible order (user ids are random uuids: order them by creation)."""
        order = {uid: i for i, uid in enumerate(list(self.users) + self.deleted)}
        return sorted(self.admin, key=lambda g: (g[0], order[g[1]]))

    def delete_user(self, uid: str) -> None:
        del self.users[uid]
        self.deleted.append(uid)
        for members in self.groups.values():
            members.discard(uid)

    def delete_group(self, gid: str) -> None:
        del self.groups[gid]
        self.dead_groups.append(gid)
