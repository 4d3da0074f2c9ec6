"""Custom SCIM schema extensions per tenant (field mapping), over real HTTP: registration (a ledger
event; 400 naming the problem; 409 on a taken URN), advertised in /Schemas and /ResourceTypes,
validated and stored on users and groups, filterable and sortable, usable by licence rules,
invisible to other tenants. Also: roles and entitlements stored and filterable."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from aiohttp import ClientSession

from test_scim_http import ERROR_URN, GROUP_URN, PATCH_URN, USER_URN, Scim

ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
ACME_GROUP = "urn:ietf:params:scim:schemas:extension:acme:2.0:Group"
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

ACME_DOC = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
    "id": ACME,
    "name": "AcmeUser",
    "description": "Acme field mapping",
    "attributes": [
        {"name": "costCenter", "type": "string", "multiValued": False, "required": False,
         "caseExact": False, "mutability": "readWrite", "returned": "default", "uniqueness": "none"},
        {"name": "licenceTier", "type": "string", "canonicalValues": ["basic", "gold"]},
        {"name": "seatsWanted", "type": "integer"},
        {"name": "badge", "type": "string", "caseExact": True},
    ],
}


async def admin_call(srv, method, path, token, json=None):
    async with ClientSession() as s:
        async with s.request(method, str(srv.make_url(path)), json=json,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json(content_type=None)


async def register(srv, tt, body) -> tuple[int, dict]:
    return await admin_call(srv, "POST", f"/v1/{tt['tenant']}/scim/extensions", tt["admin"], body)


@pytest.fixture
async def acme(service, tenant_tokens):
    """A tenant with the Acme User extension registered, and its SCIM client."""
    srv, _ = service
    st, body = await register(srv, tenant_tokens, ACME_DOC)
    assert st == 201, body
    assert body == {"id": ACME, "resourceType": "User", "required": False}
    async with ClientSession() as s:
        yield Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s), tenant_tokens


async def test_register_is_an_event_listed_and_advertised(acme, service):
    scim, tt = acme
    srv, rt = service
    from ledger.scim_extensions import extension_stream
    [ev] = await rt.store.read_stream(tt["tenant"], extension_stream(ACME))
    assert ev.type == "ScimExtensionRegistered" and ev.data["schema_id"] == ACME
    assert ev.data["definition"]["attributes"][1]["name"] == "licenceTier"
    assert ev.metadata["actor"].startswith("token:") and ev.metadata["source"] == "admin"
    st, listing = await admin_call(srv, "GET", f"/v1/{tt['tenant']}/scim/extensions", tt["admin"])
    assert st == 200 and [x["id"] for x in listing["extensions"]] == [ACME]
    assert listing["extensions"][0]["schema"]["attributes"][0]["name"] == "costCenter"
    # /Schemas lists it with every attribute characteristic; /ResourceTypes/User names it
    status, schemas, _ = await scim.req("GET", "/Schemas")
    assert status == 200
    ids = [s["id"] for s in schemas["Resources"]]
    assert ACME in ids and schemas["totalResults"] == len(ids)
    doc = next(s for s in schemas["Resources"] if s["id"] == ACME)
    tier = next(a for a in doc["attributes"] if a["name"] == "licenceTier")
    assert tier["canonicalValues"] == ["basic", "gold"] and tier["mutability"] == "readWrite"
    assert doc["meta"]["location"].endswith(f"/Schemas/{ACME}")
    status, one, _ = await scim.req("GET", f"/Schemas/{ACME}")
    assert status == 200 and one["id"] == ACME
    status, rtype, _ = await scim.req("GET", "/ResourceTypes/User")
    assert {"schema": ACME, "required": False} in rtype["schemaExtensions"]
    status, gtype, _ = await scim.req("GET", "/ResourceTypes/Group")
    assert all(x["schema"] != ACME for x in gtype["schemaExtensions"])


async def test_user_with_extension_attributes_stored_filtered_sorted_patched(acme):
    scim, _ = acme
    a = await scim.create_user("ada@acme.test", **{
        "schemas": [USER_URN, ACME, ADSCIM_GROUP],    # an unknown URI without attributes: ignored
        ACME: {"costCenter": "CC-100", "licenceTier": "Gold", "seatsWanted": "3", "badge": "AbC"}})
    assert a[ACME] == {"costCenter": "CC-100", "licenceTier": "Gold", "seatsWanted": 3, "badge": "AbC"}
    assert ACME in a["schemas"] and ADSCIM_GROUP not in a["schemas"]
    b = await scim.create_user("bob@acme.test", **{
        f"{ACME}:costCenter": "CC-200", f"{ACME}:licenceTier": "basic"})   # URN-prefixed keys
    await scim.create_user("cy@acme.test")
    status, got, _ = await scim.req("GET", f"/Users/{a['id']}")
    assert status == 200 and got[ACME]["licenceTier"] == "Gold"

    async def ids(flt, **kw):
        body = await scim.list("/Users", filter=flt, **kw)
        return [r["userName"] for r in body["Resources"]]

    # caseExact false: case-insensitive; caseExact true: exact
    assert await ids(f'{ACME}:licenceTier eq "GOLD"') == ["ada@acme.test"]
    assert await ids(f'{ACME}:costCenter sw "cc-"', sortBy=f"{ACME}:costCenter",
                     sortOrder="descending") == ["bob@acme.test", "ada@acme.test"]
    assert await ids(f'{ACME}:badge eq "abc"') == []
    assert await ids(f'{ACME}:badge eq "AbC"') == ["ada@acme.test"]
    assert await ids(f'{ACME}:seatsWanted gt 2') == ["ada@acme.test"]
    assert sorted(await ids(f'not ({ACME}:costCenter pr)')) == ["cy@acme.test"]
    # POST /.search too
    status, body, _ = await scim.req("POST", "/Users/.search", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": f'{ACME}:licenceTier eq "basic"', "attributes": [f"{ACME}:costCenter"]})
    assert status == 200 and body["Resources"][0][ACME] == {"costCenter": "CC-200"}
    # attributes / excludedAttributes on the extension
    body = await scim.list("/Users", filter='userName eq "ada@acme.test"', excludedAttributes=ACME)
    assert ACME not in body["Resources"][0]
    # PATCH with a path and without one (Entra's URN-keyed value object)
    status, p, _ = await scim.patch(f"/Users/{b['id']}",
                                    {"op": "Replace", "path": f"{ACME}:licenceTier", "value": "gold"})
    assert status == 200 and p[ACME]["licenceTier"] == "gold"
    status, p, _ = await scim.patch(f"/Users/{b['id']}",
                                    {"op": "replace", "value": {f"{ACME}:costCenter": "CC-300"}})
    assert status == 200 and p[ACME] == {"costCenter": "CC-300", "licenceTier": "gold"}
    assert sorted(await ids(f'{ACME}:licenceTier eq "gold"')) == ["ada@acme.test", "bob@acme.test"]
    status, p, _ = await scim.patch(f"/Users/{b['id']}", {"op": "remove", "path": f"{ACME}:costCenter"})
    assert status == 200 and p[ACME] == {"licenceTier": "gold"}
    # PUT replaces the extension object
    status, p, _ = await scim.req("PUT", f"/Users/{b['id']}", {"schemas": [USER_URN, ACME],
                                                               "userName": "bob@acme.test",
                                                               ACME: {"badge": "Z"}})
    assert status == 200 and p[ACME] == {"badge": "Z"}


async def test_extension_values_are_validated(acme):
    scim, _ = acme
    status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN, ACME], "userName": "x@acme.test",
                                                        ACME: {"seatsWanted": "many"}})
    assert status == 400 and body["scimType"] == "invalidValue" and "seatsWanted" in body["detail"]
    status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN, ACME], "userName": "x@acme.test",
                                                        ACME: {"nope": "1"}})
    assert status == 400 and body["scimType"] == "invalidValue" and "nope" in body["detail"]


@pytest.mark.parametrize("doc, needle", [
    ({**ACME_DOC, "id": "not a urn"}, "id"),
    ({**ACME_DOC, "id": "urn:ietf:params:scim:schemas:core:2.0:Thing"}, "reserved"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": []}, "attributes must not be empty"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "a b"}]}, "invalid attribute name"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "a", "type": "float"}]}, "unknown type 'float'"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "a", "uniqueness": "server"}]}, "uniqueness"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "a", "mutability": "sometimes"}]}, "mutability"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "id"}]}, "reserved"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "a"}, {"name": "A"}]}, "duplicate"),
    ({**ACME_DOC, "id": "urn:acme:x", "attributes": [{"name": "c", "type": "complex"}]}, "subAttributes"),
    ({"id": "urn:acme:x"}, "attributes must be an array"),
    ({"schema": {**ACME_DOC, "id": "urn:acme:x"}, "resourceType": "Device"}, "resourceType"),
    ({"schema": {**ACME_DOC, "id": "urn:acme:x"}, "colour": "red"}, "colour"),
    ([1, 2], "JSON object"),
])
async def test_invalid_extension_documents_are_400_naming_the_problem(service, tenant_tokens, doc, needle):
    srv, _ = service
    st, body = await register(srv, tenant_tokens, doc)
    assert st == 400, body
    assert needle in body["error"], body


async def test_taken_urns_are_409_and_scopes_enforced(acme, service):
    scim, tt = acme
    srv, _ = service
    st, body = await register(srv, tt, ACME_DOC)
    assert st == 409 and ACME in body["error"]
    st, body = await register(srv, tt, {**ACME_DOC, "id": ACME.upper().replace("URN:", "urn:")})
    assert st == 409
    st, body = await register(srv, tt, {**ACME_DOC, "id": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"})
    assert st == 409
    # a URN that would make attribute paths ambiguous with a registered one
    st, body = await register(srv, tt, {**ACME_DOC, "id": ACME + ":costCenter"})
    assert st == 400 and "ambiguous" in body["error"]
    for scope in ("scim", "auditor", "billing", "entitlement"):
        st, _ = await admin_call(srv, "POST", f"/v1/{tt['tenant']}/scim/extensions", tt[scope], ACME_DOC)
        assert st == 403, scope
    st, _ = await admin_call(srv, "GET", f"/v1/{tt['tenant']}/scim/extensions", tt["scim"])
    assert st == 403


async def test_other_tenants_do_not_see_the_extension(acme, service):
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    scim, tt = acme
    srv, rt = service
    other = tt["tenant"] + "-b"
    await rt.bus.execute(other, CreateTenant(other, other))
    cmd = IssueToken("scim")
    await rt.bus.execute(other, cmd)
    b = Scim(srv, other, cmd.token, scim.session)
    status, schemas, _ = await b.req("GET", "/Schemas")
    assert ACME not in [s["id"] for s in schemas["Resources"]]
    status, _, _ = await b.req("GET", f"/Schemas/{ACME}")
    assert status == 404
    status, rtype, _ = await b.req("GET", "/ResourceTypes/User")
    assert [x["schema"] for x in rtype["schemaExtensions"]] == [
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
    status, body, _ = await b.req("POST", "/Users", {"schemas": [USER_URN], "userName": "z@b.test",
                                                     ACME: {"costCenter": "CC"}})
    assert status == 400 and body["scimType"] == "invalidValue" and body["schemas"] == [ERROR_URN]
    status, body, _ = await b.req("GET", "/Users?filter=" + quote(f'{ACME}:costCenter eq "CC"'))
    assert status == 400 and body["scimType"] == "invalidFilter"
    # the unknown URI alone in `schemas` is ignored there too
    u = await b.create_user("z@b.test", schemas=[USER_URN, ACME])
    assert u["schemas"] == [USER_URN]


async def test_group_extension(service, tenant_tokens):
    srv, _ = service
    st, body = await register(srv, tenant_tokens, {"schema": {
        "id": ACME_GROUP, "name": "AcmeGroup",
        "attributes": [{"name": "department", "type": "string"},
                       {"name": "tags", "type": "string", "multiValued": True}]}, "resourceType": "Group"})
    assert st == 201 and body["resourceType"] == "Group", body
    async with ClientSession() as s:
        scim = Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)
        g = await scim.create_group("Eng", **{"schemas": [GROUP_URN, ACME_GROUP, ADSCIM_GROUP],
                                              ACME_GROUP: {"department": "R&D"}})
        assert g[ACME_GROUP] == {"department": "R&D"}
        body = await scim.list("/Groups", filter=f'{ACME_GROUP}:department eq "r&d"',
                               excludedAttributes="members")
        assert [r["displayName"] for r in body["Resources"]] == ["Eng"]
        # add on a multi-valued extension attribute appends (RFC 7644 §3.5.2.1); filter on it
        for tag in ("a", "b", "a"):
            status, _, _ = await scim.patch(f"/Groups/{g['id']}", {"op": "add", "path": f"{ACME_GROUP}:tags",
                                                                    "value": [tag]})
            assert status == 204
        status, got, _ = await scim.req("GET", f"/Groups/{g['id']}")
        assert got[ACME_GROUP] == {"department": "R&D", "tags": ["a", "b"]}
        body = await scim.list("/Groups", filter=f'{ACME_GROUP}:tags eq "B"')
        assert body["totalResults"] == 1
        status, rtype, _ = await scim.req("GET", "/ResourceTypes/Group")
        assert rtype["schemaExtensions"] == [{"schema": ACME_GROUP, "required": False}]
        status, body, _ = await scim.req("POST", "/Users", {"schemas": [USER_URN], "userName": "u@x.test",
                                                            ACME_GROUP: {"department": "R&D"}})
        assert status == 400


async def test_roles_and_entitlements_stored_and_filterable(scim_client):
    scim = scim_client
    a = await scim.create_user("r1@x.test", roles=[
        {"primary": False, "type": "WindowsAzureActiveDirectoryRole", "display": "Admin", "value": "Admin"}],
        entitlements=[{"value": "design-pro"}, {"value": "crm", "primary": True}])
    await scim.create_user("r2@x.test", roles=[{"value": "Reader"}])
    status, got, _ = await scim.req("GET", f"/Users/{a['id']}")
    assert got["roles"][0]["value"] == "Admin" and got["roles"][0]["type"] == "WindowsAzureActiveDirectoryRole"
    assert [e["value"] for e in got["entitlements"]] == ["design-pro", "crm"]

    async def names(flt):
        return sorted(r["userName"] for r in (await scim.list("/Users", filter=flt))["Resources"])

    assert await names('roles[value eq "admin"]') == ["r1@x.test"]
    assert await names('roles.value pr') == ["r1@x.test", "r2@x.test"]
    assert await names('entitlements.value eq "crm"') == ["r1@x.test"]
    assert await names('entitlements[primary eq true and value sw "cr"]') == ["r1@x.test"]
    status, p, _ = await scim.patch(f"/Users/{a['id']}", {"op": "Add", "path": "roles",
                                                           "value": [{"value": "Reader"}]})
    assert status == 200
    assert await names('roles[value eq "Reader"]') == ["r1@x.test", "r2@x.test"]


@pytest.fixture
async def scim_client(service, tenant_tokens):
    srv, _ = service
    async with ClientSession() as s:
        yield Scim(srv, tenant_tokens["tenant"], tenant_tokens["scim"], s)


async def test_licence_rule_filters_on_an_extension_attribute(acme, service):
    scim, tt = acme
    srv, _ = service
    t, admin = tt["tenant"], tt["admin"]
    gold = await scim.create_user("g@acme.test", **{ACME: {"licenceTier": "Gold"}})
    basic = await scim.create_user("b@acme.test", **{ACME: {"licenceTier": "basic"}})
    now = datetime.now(timezone.utc)
    assert (await admin_call(srv, "POST", f"/v1/{t}/products", admin,
                             {"product_id": "design-pro", "name": "Design"}))[0] == 200
    st, body = await admin_call(srv, "POST", f"/v1/{t}/pools", admin, {
        "pool_id": "p1", "product_id": "design-pro", "seats": 10,
        "term_start": (now - timedelta(days=1)).isoformat(),
        "term_end": (now + timedelta(days=365)).isoformat()})
    assert st == 200, body
    # a rule added after the users exist: re-evaluated in SQL over the projection
    st, body = await admin_call(srv, "POST", f"/v1/{t}/pools/p1/rules", admin, {
        "rule_id": "gold", "kind": "filter", "filter": f'{ACME}:licenceTier eq "gold"'})
    assert st == 200, body
    st, holders = await admin_call(srv, "GET", f"/v1/{t}/pools/p1/holders", admin)
    assert [h["user_id"] for h in holders["items"]] == [gold["id"]]
    # a SCIM write after the rule: decided in memory against the tenant's schema
    status, _, _ = await scim.patch(f"/Users/{basic['id']}",
                                    {"op": "replace", "path": f"{ACME}:licenceTier", "value": "GOLD"})
    assert status == 200
    third = await scim.create_user("n@acme.test", **{ACME: {"licenceTier": "gold"}})
    st, holders = await admin_call(srv, "GET", f"/v1/{t}/pools/p1/holders", admin)
    assert sorted(h["user_id"] for h in holders["items"]) == sorted([gold["id"], basic["id"], third["id"]])
    # an unknown extension attribute in a rule is a 400 naming the filter
    st, body = await admin_call(srv, "POST", f"/v1/{t}/pools/p1/rules", admin, {
        "rule_id": "bad", "kind": "filter", "filter": 'urn:acme:nope:User:x eq "1"'})
    assert st == 400 and body.get("field") == "filter", body


def test_rule_binds_against_the_cached_tenant_schema():
    from ledger.licence_rules import Rule
    from ledger.scim.filter import FilterError
    from ledger.scim.schema import Schema
    from ledger.scim_extensions import _CACHE, _defaults, _Entry
    rs = _defaults()["User"].with_extension(Schema.from_json(ACME_DOC))
    _CACHE["t-rule-unit"] = _Entry(0.0, ((ACME, 1),), {"User": rs, "Group": _defaults()["Group"]})
    try:
        r = Rule("p", "r", 1, "filter", None, f'{ACME}:licenceTier eq "gold"')
        assert r.bound_filter("t-rule-unit") is not None
        with pytest.raises(FilterError):
            r.bound_filter()                 # the built-in schema does not know the extension
        with pytest.raises(FilterError):
            r.bound_filter("t-other")        # nor does another tenant's
    finally:
        _CACHE.pop("t-rule-unit", None)


async def test_patch_op_urn_key_paths_unknown_for_other_schema(acme):
    scim, _ = acme
    u = await scim.create_user("p@acme.test")
    status, body, _ = await scim.req("PATCH", f"/Users/{u['id']}", {
        "schemas": [PATCH_URN], "Operations": [{"op": "add", "path": ACME,
                                                "value": {"schemas": [ACME], "costCenter": "C1"}}]})
    assert status == 200 and body[ACME] == {"costCenter": "C1"}, body
