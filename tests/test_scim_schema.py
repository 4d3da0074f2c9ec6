"""The SCIM schema registry (RFC 7643): definitions, JSON forms, path resolution, doc_ci."""
from __future__ import annotations

import copy

import pytest

from ledger.scim.schema import (
    COMMON_ATTRIBUTES,
    ENTERPRISE_USER_SCHEMA,
    ENTERPRISE_USER_URN,
    GROUP_SCHEMA,
    GROUP_URN,
    USER_SCHEMA,
    USER_URN,
    Attribute,
    ResourceSchema,
    Schema,
    casefold_doc,
    default_group_schema,
    default_user_schema,
)

ENT = ENTERPRISE_USER_URN


def test_user_schema_lists_every_rfc_attribute_in_order():
    assert [a.name for a in USER_SCHEMA.attributes] == [
        "userName", "name", "displayName", "nickName", "profileUrl", "title", "userType",
        "preferredLanguage", "locale", "timezone", "active", "password", "emails",
        "phoneNumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles",
        "x509Certificates",
    ]
    name = USER_SCHEMA.attribute("name")
    assert [s.name for s in name.sub_attributes] == [
        "formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix",
    ]
    for multi in ("emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"):
        a = USER_SCHEMA.attribute(multi)
        assert a.multi_valued and a.type == "complex"
        assert [s.name for s in a.sub_attributes] == ["value", "display", "type", "primary"]
        assert a.sub("primary").type == "boolean"
    assert [s.name for s in USER_SCHEMA.attribute("addresses").sub_attributes] == [
        "formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary",
    ]


def test_user_schema_characteristics_match_rfc_8_7_1():
    u = USER_SCHEMA.attribute
    user_name = u("userName")
    assert (user_name.required, user_name.case_exact, user_name.uniqueness, user_name.mutability) == (
        True, False, "server", "readWrite")
    pw = u("password")
    assert (pw.mutability, pw.returned, pw.case_exact) == ("writeOnly", "never", False)
    assert u("active").type == "boolean"
    assert u("profileUrl").type == "reference" and u("profileUrl").reference_types == ("external",)
    assert u("photos").sub("value").type == "reference"
    assert u("photos").sub("value").reference_types == ("external",)
    assert u("photos").sub("type").canonical_values == ("photo", "thumbnail")
    assert u("emails").sub("type").canonical_values == ("work", "home", "other")
    assert u("phoneNumbers").sub("type").canonical_values == ("work", "home", "mobile", "fax", "pager", "other")
    assert u("ims").sub("type").canonical_values == ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")
    assert u("x509Certificates").sub("value").type == "binary"
    groups = u("groups")
    assert groups.mutability == "readOnly" and groups.multi_valued
    assert all(s.mutability == "readOnly" for s in groups.sub_attributes)
    assert groups.sub("$ref").reference_types == ("User", "Group")
    assert groups.sub("type").canonical_values == ("direct", "indirect")
    # everything else a client may write is readWrite, returned by default, case-insensitive
    for a in USER_SCHEMA.attributes:
        if a.name in ("groups", "password"):
            continue
        assert a.mutability == "readWrite" and a.returned == "default", a.name
        assert not a.case_exact, a.name
        for s in a.sub_attributes:
            assert s.mutability == "readWrite" and not s.case_exact, (a.name, s.name)


def test_common_attributes():
    c = {a.name: a for a in COMMON_ATTRIBUTES}
    assert (c["id"].case_exact, c["id"].mutability, c["id"].returned, c["id"].uniqueness) == (
        True, "readOnly", "always", "server")
    assert c["externalId"].case_exact and c["externalId"].mutability == "readWrite"
    meta = c["meta"]
    assert meta.mutability == "readOnly"
    assert [s.name for s in meta.sub_attributes] == ["resourceType", "created", "lastModified", "location", "version"]
    assert meta.sub("created").type == "dateTime" and meta.sub("lastModified").type == "dateTime"


def test_group_and_enterprise_schemas():
    assert GROUP_SCHEMA.id == GROUP_URN
    dn = GROUP_SCHEMA.attribute("displayName")
    assert dn.required and not dn.case_exact
    members = GROUP_SCHEMA.attribute("members")
    assert members.multi_valued and members.mutability == "readWrite"
    assert members.sub("value").mutability == "immutable"
    assert members.sub("$ref").reference_types == ("User", "Group")
    assert members.sub("type").canonical_values == ("User", "Group")

    assert [a.name for a in ENTERPRISE_USER_SCHEMA.attributes] == [
        "employeeNumber", "costCenter", "organization", "division", "department", "manager",
    ]
    mgr = ENTERPRISE_USER_SCHEMA.attribute("manager")
    assert [s.name for s in mgr.sub_attributes] == ["value", "$ref", "displayName"]
    assert mgr.sub("displayName").mutability == "readOnly"
    assert mgr.sub("$ref").reference_types == ("User",)
    assert mgr.sub("value").mutability == "readWrite"


def test_attribute_sub_is_case_insensitive():
    emails = USER_SCHEMA.attribute("EMAILS")
    assert emails is USER_SCHEMA.attribute("emails")
    assert emails.sub("VALUE").name == "value"
    assert USER_SCHEMA.attribute("groups").sub("$REF").name == "$ref"
    assert emails.sub("nope") is None


def test_to_json_uses_rfc_7643_section_7_names():
    j = USER_SCHEMA.to_json()
    assert j["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:Schema"]
    assert j["id"] == USER_URN and j["name"] == "User"
    emails = next(a for a in j["attributes"] if a["name"] == "emails")
    assert emails["multiValued"] is True and emails["type"] == "complex"
    assert {"name", "type", "multiValued", "description", "required", "caseExact", "mutability",
            "returned", "uniqueness", "subAttributes"} <= set(emails)
    value = emails["subAttributes"][0]
    assert value["caseExact"] is False and "subAttributes" not in value
    photos = next(a for a in j["attributes"] if a["name"] == "photos")
    assert photos["subAttributes"][0]["referenceTypes"] == ["external"]
    assert USER_SCHEMA.to_json(location="https://x/Schemas/u")["meta"] == {
        "resourceType": "Schema", "location": "https://x/Schemas/u"}


@pytest.mark.parametrize("schema", [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA])
def test_schema_json_roundtrip(schema):
    assert Schema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize("schema", [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA])
def test_scim2_models_accepts_our_schemas(schema):
    """scim2-tester reads /Schemas with scim2-models: it must parse them and agree on names."""
    from scim2_models import Schema as S2Schema

    parsed = S2Schema.model_validate(schema.to_json())
    assert parsed.id == schema.id
    names = [a.name for a in parsed.attributes]
    assert names == [a.name for a in schema.attributes]


@pytest.mark.parametrize("model_name", ["User", "Group", "EnterpriseUser"])
def test_names_and_types_agree_with_scim2_models(model_name):
    import scim2_models

    model = getattr(scim2_models, model_name)
    theirs = model.to_schema()
    ours = {"User": USER_SCHEMA, "Group": GROUP_SCHEMA, "EnterpriseUser": ENTERPRISE_USER_SCHEMA}[model_name]
    for ta in theirs.attributes:
        oa = ours.attribute(ta.name)
        assert oa is not None, ta.name
        assert oa.type == str(ta.type.value if hasattr(ta.type, "value") else ta.type), ta.name
        for ts in ta.sub_attributes or []:
            os_ = oa.sub(ts.name)
            assert os_ is not None, (ta.name, ts.name)
            assert os_.type == str(ts.type.value if hasattr(ts.type, "value") else ts.type)


def test_resource_types():
    users = default_user_schema()
    assert users.name == "User" and users.endpoint == "/Users"
    assert users.schema is USER_SCHEMA
    assert users.extensions == ((ENTERPRISE_USER_SCHEMA, False),)
    assert users.schema_urns == [USER_URN, ENT]
    j = users.to_json()
    assert j["schema"] == USER_URN and j["schemaExtensions"] == [{"schema": ENT, "required": False}]
    groups = default_group_schema()
    assert groups.endpoint == "/Groups" and groups.extensions == ()
    assert groups.resolve("members.value").target.mutability == "immutable"
    assert groups.resolve("displayName").schema == GROUP_URN


@pytest.mark.parametrize(
    "path, schema, location, canonical",
    [
        ("userName", USER_URN, ("userName",), "userName"),
        ("USERNAME", USER_URN, ("userName",), "userName"),
        ("name.givenName", USER_URN, ("name", "givenName"), "name.givenName"),
        ("Name.GivenName", USER_URN, ("name", "givenName"), "name.givenName"),
        ("emails.value", USER_URN, ("emails", "value"), "emails.value"),
        ("emails", USER_URN, ("emails",), "emails"),
        ("groups.$ref", USER_URN, ("groups", "$ref"), "groups.$ref"),
        (f"{USER_URN}:userName", USER_URN, ("userName",), "userName"),
        (f"{USER_URN.upper()}:name.familyName", USER_URN, ("name", "familyName"), "name.familyName"),
        (f"{ENT}:department", ENT, (ENT, "department"), f"{ENT}:department"),
        (f"{ENT.lower()}:Manager.Value", ENT, (ENT, "manager", "value"), f"{ENT}:manager.value"),
        (f"{ENT}:manager.$ref", ENT, (ENT, "manager", "$ref"), f"{ENT}:manager.$ref"),
        (f"{ENT}:manager", ENT, (ENT, "manager"), f"{ENT}:manager"),
        ("id", USER_URN, ("id",), "id"),
        ("externalId", USER_URN, ("externalId",), "externalId"),
        ("meta.lastModified", USER_URN, ("meta", "lastModified"), "meta.lastModified"),
        (f"{USER_URN}:meta.created", USER_URN, ("meta", "created"), "meta.created"),
    ],
)
def test_resolve(path, schema, location, canonical):
    r = default_user_schema().resolve(path)
    assert r is not None
    assert r.schema == schema
    assert r.location == location
    assert r.canonical == canonical
    assert r.full.endswith(r.attr_path) and r.full.startswith(schema)


def test_resolved_attr_details():
    rs = default_user_schema()
    r = rs.resolve(f"{ENT}:manager.value")
    assert r.extension and r.container == (ENT,)
    assert r.attribute.name == "manager" and r.sub_attribute.name == "value"
    assert r.target is r.sub_attribute and not r.multi_valued
    e = rs.resolve("emails.type")
    assert e.multi_valued and not e.extension and e.container == ()
    assert rs.resolve("externalId").common and rs.resolve("externalId").target.case_exact
    assert not rs.resolve("userName").common


@pytest.mark.parametrize(
    "path",
    [
        "nope", "name.nope", "userName.value", "emails.value.x", "", ".userName", "user name",
        f"{ENT}:userName",  # core attribute is not in the extension
        "urn:example:unknown:2.0:User:userName",
        "department",  # extension attributes need their URN
        "1abc",
    ],
)
def test_resolve_unknown_is_none(path):
    assert default_user_schema().resolve(path) is None


CUSTOM = {
    "id": "urn:example:params:scim:schemas:extension:acme:2.0:User",
    "name": "AcmeUser",
    "description": "Acme",
    "attributes": [
        {"name": "badge", "type": "string", "caseExact": True},
        {"name": "level", "type": "integer"},
        {"name": "tags", "type": "string", "multiValued": True},
        {"name": "site", "type": "complex", "subAttributes": [{"name": "code"}, {"name": "floor", "type": "integer"}]},
    ],
}


def test_custom_extension():
    rs = default_user_schema()
    ext = Schema.from_json(CUSTOM)
    assert ext.attribute("tags").multi_valued
    assert ext.attribute("site").sub("code").type == "string"  # RFC 7643 §2.2 default type
    rs2 = rs.with_extension(ext)
    assert rs.resolve(f"{CUSTOM['id']}:badge") is None  # immutable: a new ResourceSchema
    r = rs2.resolve(f"{CUSTOM['id']}:site.floor")
    assert r.location == (CUSTOM["id"], "site", "floor") and r.target.type == "integer"
    assert rs2.schema_urns[-1] == CUSTOM["id"]
    assert rs2.schema_for_urn(CUSTOM["id"].upper()) is ext
    with pytest.raises(ValueError, match="already"):
        rs2.with_extension(ext)
    with pytest.raises(ValueError, match="already"):
        rs.with_extension(ENTERPRISE_USER_SCHEMA)


def _bad(**changes):
    d = copy.deepcopy(CUSTOM)
    d.update(changes)
    return d


def _bad_attr(**attr):
    return _bad(attributes=[attr])


@pytest.mark.parametrize(
    "doc, message",
    [
        ("nope", "JSON object"),
        (_bad(id=None), "schema id"),
        (_bad(id="no-colon"), "schema id"),
        (_bad(id="urn:x:y z"), "schema id"),
        (_bad(id="urn:x:'y"), "schema id"),
        (_bad(attributes=None), "attributes must be an array"),
        (_bad(attributes=["x"]), "JSON object"),
        (_bad(name=5), "name must be a string"),
        (_bad_attr(type="string"), "invalid attribute name"),
        (_bad_attr(name="1st"), "invalid attribute name"),
        (_bad_attr(name="a.b"), "invalid attribute name"),
        (_bad_attr(name="a:b"), "invalid attribute name"),
        (_bad_attr(name="x", type="text"), "unknown type"),
        (_bad_attr(name="x", multiValued="yes"), "multiValued must be a boolean"),
        (_bad_attr(name="x", caseExact=1), "caseExact must be a boolean"),
        (_bad_attr(name="x", mutability="sometimes"), "mutability"),
        (_bad_attr(name="x", returned="maybe"), "returned"),
        (_bad_attr(name="x", uniqueness="unique"), "uniqueness"),
        (_bad_attr(name="x", canonicalValues="a"), "canonicalValues"),
        (_bad_attr(name="x", type="complex"), "subAttributes"),
        (_bad_attr(name="x", type="complex", subAttributes=[]), "subAttributes"),
        (_bad_attr(name="x", subAttributes=[{"name": "y"}]), "only allowed on complex"),
        (_bad_attr(name="x", type="complex", subAttributes=[
            {"name": "y", "type": "complex", "subAttributes": [{"name": "z"}]}]), "cannot be complex"),
        (_bad_attr(name="x", type="complex", subAttributes=[{"name": "y"}, {"name": "Y"}]), "duplicate"),
        (_bad(attributes=[{"name": "x"}, {"name": "X"}]), "duplicate"),
    ],
)
def test_schema_from_json_validates(doc, message):
    with pytest.raises(ValueError, match=message):
        Schema.from_json(doc)


def test_attribute_defaults_follow_rfc_2_2():
    a = Attribute.from_json({"name": "x"})
    assert (a.type, a.multi_valued, a.required, a.case_exact, a.mutability, a.returned, a.uniqueness) == (
        "string", False, False, False, "readWrite", "default", "none")


def test_casefold_doc():
    rs = default_user_schema().with_extension(Schema.from_json(CUSTOM))
    doc = {
        "schemas": [USER_URN],
        "id": "AbC-1",
        "externalId": "ExT",
        "userName": "Straße@EXAMPLE.com",
        "name": {"givenName": "İlke", "familyName": None},
        "active": True,
        "emails": [{"value": "A@B.C", "type": "Work", "primary": True}, "weird"],
        "meta": {"created": "2020-01-01T00:00:00Z", "version": 'W/"AbC"', "resourceType": "User"},
        "unknownKey": "KeepMe",
        ENT: {"department": "R&D", "manager": {"value": "MgR", "displayName": "Boss"}},
        CUSTOM["id"]: {"badge": "XyZ", "tags": ["Aa", 3], "site": {"code": "HQ", "floor": 3}},
    }
    original = copy.deepcopy(doc)
    ci = casefold_doc(doc, rs)
    assert doc == original  # not mutated
    assert ci["userName"] == "strasse@example.com"
    assert ci["name"] == {"givenName": "İlke".casefold(), "familyName": None}
    assert ci["emails"] == [{"value": "a@b.c", "type": "work", "primary": True}, "weird"]
    assert ci["id"] == "AbC-1" and ci["externalId"] == "ExT"  # caseExact
    assert ci["meta"] == doc["meta"]  # dateTime and caseExact strings unchanged
    assert ci["unknownKey"] == "KeepMe" and ci["schemas"] == [USER_URN]
    assert ci["active"] is True
    assert ci[ENT] == {"department": "r&d", "manager": {"value": "mgr", "displayName": "boss"}}
    assert ci[CUSTOM["id"]] == {"badge": "XyZ", "tags": ["aa", 3], "site": {"code": "hq", "floor": 3}}
