#!/usr/bin/env python3
"""Why SCIM bodies are validated by our schema-driven `normalize` and not by scim2-models: the cost
of one User[EnterpriseUser] validation (plus the dump back to a dict, which the ledger needs) against
ours, on the same RFC 7643 §8.2-like body, measured in the same run, and what each leaves of the
1 ms of CPU per create that >= 1,000 creates/s on 2 cores allows (the server shares them with
PostgreSQL and the load generator, so ~0.3 ms is the real budget for validation + everything else).

    python scripts/bench_validation.py [--n 20000] [--quick]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from scim2_models import Context, EnterpriseUser, User  # noqa: E402

from ledger.scim.resource import normalize  # noqa: E402
from ledger.scim.schema import default_user_schema  # noqa: E402

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BODY = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
    "externalId": "701984", "userName": "bjensen@example.com",
    "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara",
             "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
    "displayName": "Babs Jensen", "nickName": "Babs", "profileUrl": "https://login.example.com/bjensen",
    "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True},
               {"value": "babs@jensen.org", "type": "home"}],
    "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                   "region": "CA", "postalCode": "91608", "country": "USA", "primary": True}],
    "phoneNumbers": [{"value": "555-555-5555", "type": "work"}, {"value": "555-555-4444", "type": "mobile"}],
    "userType": "Employee", "title": "Tour Guide", "preferredLanguage": "en-US", "locale": "en-US",
    "timezone": "America/Los_Angeles", "active": True,
    ENT: {"employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
          "division": "Theme Park", "department": "Tour Operations",
          "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d"}},
}


def per_call_us(fn, n: int) -> float:
    for _ in range(min(200, n)):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 500 if args.quick else args.n
    rs = default_user_schema()
    model = User[EnterpriseUser]

    def scim2():
        u = model.model_validate(BODY, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        u.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)

    ours_us = per_call_us(lambda: normalize(BODY, rs), n)
    theirs_us = per_call_us(scim2, n)
    res = {"scim2_models_us": round(theirs_us, 1), "ours_us": round(ours_us, 1),
           "ratio": round(theirs_us / ours_us, 1),
           "scim2_models_share_of_budget": round(theirs_us / 300, 2), "ours_share_of_budget": round(ours_us / 300, 2),
           "calls": n}
    print(f"scim2-models validate+dump: {res['scim2_models_us']} us per user "
          f"({res['scim2_models_share_of_budget']:.0%} of a 300 us per-create budget)")
    print(f"ours (normalize):           {res['ours_us']} us per user ({res['ours_share_of_budget']:.0%})")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
