"""Assignment rules: which users a pool's rules grant, evaluated for one user in memory (on a SCIM
write) or for all users in SQL (on a rule edit) - one filter engine with SCIM for both.

Grants are named by rule id, plus "admin" for an explicit admin assignment. A user's priority in a
pool is the best (lowest) priority among the rules that grant it; an admin grant has priority 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .events import Event, event
from .licences import Demand

ADMIN_GRANT = "admin"
ADMIN_PRIORITY = 0
KINDS = ("all_active", "group", "filter", "entitlement")


@event("RuleAdded")
class RuleAdded(Event):
    pool_id: str
    rule_id: str
    priority: int
    kind: str
    group_id: str | None = None
    filter: str | None = None


@event("RuleRemoved")
class RuleRemoved(Event):
    pool_id: str
    rule_id: str


@event("AdminGranted")
class AdminGranted(Event):
    pool_id: str
    user_id: str


@event("AdminRevoked")
class AdminRevoked(Event):
    pool_id: str
    user_id: str


@dataclass(frozen=True)
class Rule:
    pool_id: str
    rule_id: str
    priority: int
    kind: str
    group_id: str | None = None
    filter: str | None = None

    def bound_filter(self, tenant: str | None = None):
        """The filter bound to `tenant`'s User schema (core + Enterprise + the tenant's custom
        extensions, from `ledger.scim_extensions`' cache: async loaders warm it first with
        `await tenant_user_schema(conn, tenant)`), or to the built-in User schema if None."""
        from .scim.filter import bind
        from .scim_extensions import cached_user_schema
        return bind(self.filter, cached_user_schema(tenant))


def _is_active(user: dict) -> bool:
    return user.get("active", True) is not False


def _has_entitlement(user: dict, product_id: str) -> bool:
    for e in user.get("entitlements") or ():
        if isinstance(e, dict) and e.get("value") == product_id:
            return True
    return False


def rule_grants(rule: Rule, user: dict, groups: set[str], product_id: str, bound=None) -> bool:
    """Does `rule` grant the pool to this (existing) user? Deactivation is not a rule matter: an
    inactive user still matches, and the seat decider suspends or ends its seat."""
    if rule.kind == "all_active":
        return True
    if rule.kind == "group":
        return rule.group_id in groups
    if rule.kind == "entitlement":
        return _has_entitlement(user, product_id)
    if rule.kind == "filter":
        from .scim.filter import evaluate
        return evaluate(bound if bound is not None else rule.bound_filter(), user)
    return False


def demand_for_user(rules: Iterable[Rule], admin_pools: set[str], pool_id: str, product_id: str,
                    user: dict | None, groups: set[str], bound: dict | None = None) -> Demand:
    """The Demand of one user on one pool. `user` None means deleted."""
    if user is None:
        return Demand(frozenset(), deleted=True)
    grants, prio = set(), None
    for r in rules:
        if r.pool_id == pool_id and rule_grants(r, user, groups, product_id, (bound or {}).get(r.rule_id)):
            grants.add(r.rule_id)
            prio = r.priority if prio is None else min(prio, r.priority)
    if pool_id in admin_pools:
        grants.add(ADMIN_GRANT)
        prio = ADMIN_PRIORITY if prio is None else min(prio, ADMIN_PRIORITY)
    return Demand(frozenset(grants), prio if prio is not None else 100, _is_active(user))
