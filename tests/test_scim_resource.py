"""ledger.scim.resource: POST/PUT body validation and normalisation (no database needed)."""
from __future__ import annotations

import time

import pytest

from ledger.scim.resource import ScimError, normalize
from ledger.scim.schema import (
    ENTERPRISE_USER_URN, GROUP_URN, USER_URN, Schema, default_group_schema, default_user_schema,
)

CUSTOM_URN = "urn:example:params:scim:schemas:extension:seatledger:2.0:User"
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

USERS = default_user_schema()
GROUPS = default_group_schema()
CUSTOM = Schema.from_json({
    "id": CUSTOM_URN,
    "name": "SeatLedgerUser",
    "attributes": [
        {"name": "badge", "type": "integer"},
        {"name": "score", "type": "decimal"},
        {"name": "hiredAt", "type": "dateTime"},
        {"name": "photo", "type": "binary"},
        {"name": "vip", "type": "boolean"},
        {"name": "tenantKey", "type": "string", "mutability": "immutable", "caseExact": False},
        {"name": "serverNote", "type": "string", "mutability": "readOnly"},
    ],
})
USERS_X = USERS.with_extension(CUSTOM)


def err(fn, *a, **kw) -> ScimError:
    with pytest.raises(ScimError) as ei:
        fn(*a, **kw)
    return ei.value


# --------------------------------------------------------------------------------------------
# canonical form


def test_canonical_spelling_and_schemas():
    out = normalize({
        "SCHEMAS": [USER_URN],
        "USERNAME": "ada@example.com",
        "Name": {"GIVENNAME": "Ada", "familyname": "Lovelace"},
        "Emails": [{"VALUE": "ada@example.com", "Type": "work", "Primary": True}],
        "externalid": "e-1",
    }, USERS)
    assert out == {
        "schemas": [USER_URN],
        "userName": "ada@example.com",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
        "externalId": "e-1",
    }


def test_extension_attributes_live_under_their_urn_and_are_listed_in_schemas():
    out = normalize({
        "schemas": [USER_URN, ENTERPRISE_USER_URN],
        "userName": "u",
        ENTERPRISE_USER_URN.upper(): {"EmployeeNumber": "42", "department": "R&D"},
    }, USERS)
    assert out["schemas"] == [USER_URN, ENTERPRISE_USER_URN]
    assert out[ENTERPRISE_USER_URN] == {"employeeNumber": "42", "department": "R&D"}


def test_schemas_lists_only_extensions_actually_present():
    out = normalize({"schemas": [USER_URN, ENTERPRISE_USER_URN], "userName": "u",
                     ENTERPRISE_USER_URN: {"employeeNumber": None}}, USERS)
    assert out == {"schemas": [USER_URN], "userName": "u"}


def test_urn_prefixed_core_and_extension_keys():
    out = normalize({f"{USER_URN}:userName": "u",
                     f"{ENTERPRISE_USER_URN}:employeeNumber": "7"}, USERS)
    assert out["userName"] == "u"
    assert out[ENTERPRISE_USER_URN] == {"employeeNumber": "7"}


def test_missing_schemas_is_tolerated():
    assert normalize({"userName": "u"}, USERS) == {"schemas": [USER_URN], "userName": "u"}


def test_null_and_empty_values_are_unassigned():
    out = normalize({"userName": "u", "nickName": None, "emails": [], "name": {"givenName": None},
                     "phoneNumbers": [None]}, USERS)
    assert out == {"schemas": [USER_URN], "userName": "u"}


def test_single_value_for_multi_valued_attribute_is_wrapped():
    out = normalize({"userName": "u", "emails": {"value": "a@x"}}, USERS)
    assert out["emails"] == [{"value": "a@x"}]


def test_identical_duplicates_dropped_and_members_deduplicated_by_value():
    out = normalize({"userName": "u", "emails": [{"value": "a@x"}, {"value": "a@x"}]}, USERS)
    assert out["emails"] == [{"value": "a@x"}]
    g = normalize({"displayName": "g", "members": [{"value": "1", "display": "One"},
                                                   {"value": "1"}, {"value": "2"}]}, GROUPS)
    # members.display is readOnly (derived from the member at read time): dropped on input
    assert g["members"] == [{"value": "1"}, {"value": "2"}]


def test_string_scalar_for_complex_multi_valued_element():
    g = normalize({"displayName": "g", "members": ["1", {"value": "2"}]}, GROUPS)
    assert g["members"] == [{"value": "1"}, {"value": "2"}]


# --------------------------------------------------------------------------------------------
# dropped attributes


def test_okta_create_body_password_and_groups_dropped():
    body = {
        "schemas": [USER_URN],
        "userName": "isabella.m@example.com",
        "name": {"givenName": "Isabella", "familyName": "Morales"},
        "emails": [{"primary": True, "value": "isabella.m@example.com", "type": "work"}],
        "displayName": "Isabella Morales",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    out = normalize(body, USERS)
    assert "password" not in out and "groups" not in out
    assert out["active"] is True and out["locale"] == "en-US"


def test_client_meta_and_id_are_ignored():
    out = normalize({"id": "client-chosen", "meta": {"resourceType": "User"}, "userName": "u"},
                    USERS)
    assert out == {"schemas": [USER_URN], "userName": "u"}


def test_entra_group_create_with_adscim_schema_and_meta():
    body = {
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Group1",
        "meta": {"resourceType": "Group"},
        "schemas": [GROUP_URN, ADSCIM_GROUP],
        "members": [],
    }
    out = normalize(body, GROUPS)
    assert out == {"schemas": [GROUP_URN], "externalId": body["externalId"],
                   "displayName": "Group1"}


def test_readonly_attributes_and_sub_attributes_dropped():
    out = normalize({"userName": "u", "groups": [{"value": "g1"}],
                     ENTERPRISE_USER_URN: {"manager": {"value": "m", "displayName": "Boss"}}},
                    USERS)
    assert "groups" not in out
    assert out[ENTERPRISE_USER_URN] == {"manager": {"value": "m"}}
    out = normalize({"userName": "u", CUSTOM_URN: {"serverNote": "x"}}, USERS_X)
    assert CUSTOM_URN not in out


# --------------------------------------------------------------------------------------------
# unknown attributes and schemas


def test_unknown_top_level_attribute_is_invalid_value():
    e = err(normalize, {"userName": "u", "favouriteColour": "blue"}, USERS)
    assert (e.status, e.scim_type) == (400, "invalidValue")
    assert "favouriteColour" in e.detail


def test_unknown_attribute_ignored_on_request():
    out = normalize({"userName": "u", "favouriteColour": "blue"}, USERS, ignore_unknown=True)
    assert out == {"schemas": [USER_URN], "userName": "u"}


def test_attributes_under_unregistered_extension_urn_are_invalid_value():
    e = err(normalize, {"userName": "u", "urn:example:unknown:2.0:User": {"x": 1}}, USERS)
    assert e.scim_type == "invalidValue"
    e = err(normalize, {"userName": "u", "urn:example:unknown:2.0:User:x": "1"}, USERS)
    assert e.scim_type == "invalidValue"


def test_unknown_schema_uri_without_attributes_is_ignored():
    out = normalize({"schemas": [USER_URN, "urn:example:unknown:2.0:User"], "userName": "u"},
                    USERS)
    assert out["schemas"] == [USER_URN]


def test_unknown_sub_attribute_is_invalid_value_but_null_ref_tolerated():
    e = err(normalize, {"userName": "u", "name": {"nick": "x"}}, USERS)
    assert e.scim_type == "invalidValue"
    g = normalize({"displayName": "g", "members": [{"value": "1", "$ref": None}]}, GROUPS)
    assert g["members"] == [{"value": "1"}]


def test_extension_value_must_be_an_object():
    assert err(normalize, {"userName": "u", ENTERPRISE_USER_URN: "x"}, USERS).scim_type == \
        "invalidValue"


def test_schemas_must_be_a_list_of_strings():
    assert err(normalize, {"userName": "u", "schemas": USER_URN}, USERS).scim_type == \
        "invalidValue"


def test_body_must_be_an_object():
    e = err(normalize, ["userName"], USERS)
    assert (e.status, e.scim_type) == (400, "invalidSyntax")


# --------------------------------------------------------------------------------------------
# types


@pytest.mark.parametrize("raw,expected", [("True", True), ("False", False), ("false", False),
                                          ("TRUE", True), (True, True), (False, False)])
def test_entra_boolean_strings(raw, expected):
    assert normalize({"userName": "u", "active": raw}, USERS)["active"] is expected


@pytest.mark.parametrize("raw", ["yes", 1, 0, "", [True]])
def test_bad_booleans(raw):
    assert err(normalize, {"userName": "u", "active": raw}, USERS).scim_type == "invalidValue"


def test_boolean_sub_attribute_strings():
    out = normalize({"userName": "u", "emails": [{"value": "a@x", "primary": "True"}]}, USERS)
    assert out["emails"] == [{"value": "a@x", "primary": True}]


def test_integer_decimal_datetime_binary():
    out = normalize({"userName": "u", CUSTOM_URN: {
        "badge": "42", "score": "1.5", "hiredAt": "2024-01-31T12:00:00Z", "photo": "aGVsbG8=",
        "vip": "False"}}, USERS_X)
    assert out[CUSTOM_URN] == {"badge": 42, "score": 1.5, "hiredAt": "2024-01-31T12:00:00Z",
                               "photo": "aGVsbG8=", "vip": False}
    assert normalize({"userName": "u", CUSTOM_URN: {"badge": 7.0, "score": 2}},
                     USERS_X)[CUSTOM_URN] == {"badge": 7, "score": 2}


@pytest.mark.parametrize("attr,raw", [
    ("badge", "4x"), ("badge", True), ("badge", 1.5), ("score", "abc"), ("score", float("nan")),
    ("score", False), ("hiredAt", "2024-13-01T00:00:00Z"), ("hiredAt", "yesterday"),
    ("hiredAt", 1700000000), ("photo", "not base64!"), ("tenantKey", 5),
])
def test_wrong_types_are_invalid_value(attr, raw):
    e = err(normalize, {"userName": "u", CUSTOM_URN: {attr: raw}}, USERS_X)
    assert (e.status, e.scim_type) == (400, "invalidValue")


def test_datetime_seven_fraction_digits_truncated():
    out = normalize({"userName": "u", CUSTOM_URN: {"hiredAt": "2024-01-31T12:00:00.1234567Z"}},
                    USERS_X)
    assert out[CUSTOM_URN]["hiredAt"] == "2024-01-31T12:00:00.123456Z"


def test_string_attribute_rejects_non_strings():
    assert err(normalize, {"userName": 42}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"userName": "u", "name": "Ada"}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"userName": "u", "displayName": ["a"]}, USERS).scim_type == \
        "invalidValue"


def test_nul_character_is_invalid_value():
    assert err(normalize, {"userName": "a\u0000b"}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"userName": "u", "name": {"givenName": "\u0000"}},
               USERS).scim_type == "invalidValue"


def test_manager_bare_string():
    out = normalize({"userName": "u", ENTERPRISE_USER_URN: {"manager": "boss-id"}}, USERS)
    assert out[ENTERPRISE_USER_URN] == {"manager": {"value": "boss-id"}}


def test_manager_with_null_ref():
    out = normalize({"userName": "u",
                     ENTERPRISE_USER_URN: {"manager": {"value": "b", "$ref": None}}}, USERS)
    assert out[ENTERPRISE_USER_URN] == {"manager": {"value": "b"}}


# --------------------------------------------------------------------------------------------
# required, primary


def test_required_attributes():
    assert err(normalize, {"name": {"givenName": "x"}}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"userName": ""}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"userName": None}, USERS).scim_type == "invalidValue"
    assert err(normalize, {"members": []}, GROUPS).scim_type == "invalidValue"


def test_at_most_one_primary():
    e = err(normalize, {"userName": "u", "emails": [{"value": "a", "primary": True},
                                                    {"value": "b", "primary": "True"}]}, USERS)
    assert e.scim_type == "invalidValue" and "primary" in e.detail
    out = normalize({"userName": "u", "emails": [{"value": "a", "primary": True},
                                                 {"value": "b", "primary": False}]}, USERS)
    assert len(out["emails"]) == 2


# --------------------------------------------------------------------------------------------
# PUT


def _stored():
    return normalize({"userName": "u", "active": True,
                      CUSTOM_URN: {"tenantKey": "Acme", "badge": 1}}, USERS_X)


def test_put_okta_deactivation():
    existing = _stored()
    body = {"schemas": [USER_URN], "id": "whatever", "userName": "u", "active": False,
            "name": {"givenName": "A", "familyName": "B"}, "password": "p", "groups": [],
            "meta": {"resourceType": "User"}}
    out = normalize(body, USERS_X, for_replace=True, existing=existing)
    assert out["active"] is False
    assert out[CUSTOM_URN] == {"tenantKey": "Acme"}  # immutable carried over, badge cleared
    assert "id" not in out and "password" not in out


def test_put_immutable_resent_equal_ok_changed_refused():
    existing = _stored()
    out = normalize({"userName": "u", CUSTOM_URN: {"tenantKey": "ACME"}}, USERS_X,
                    for_replace=True, existing=existing)  # caseExact false: equal
    assert out[CUSTOM_URN]["tenantKey"] == "ACME"
    e = err(normalize, {"userName": "u", CUSTOM_URN: {"tenantKey": "Other"}}, USERS_X,
            for_replace=True, existing=existing)
    assert (e.status, e.scim_type) == (400, "mutability")


def test_put_immutable_may_be_set_when_unassigned():
    existing = normalize({"userName": "u"}, USERS_X)
    out = normalize({"userName": "u", CUSTOM_URN: {"tenantKey": "K"}}, USERS_X,
                    for_replace=True, existing=existing)
    assert out[CUSTOM_URN] == {"tenantKey": "K"}


def test_put_readonly_ignored():
    existing = _stored()
    out = normalize({"userName": "u", "groups": [{"value": "g"}], "meta": {"version": "W/1"},
                     CUSTOM_URN: {"serverNote": "hack", "tenantKey": "Acme"}},
                    USERS_X, for_replace=True, existing=existing)
    assert "groups" not in out and out[CUSTOM_URN] == {"tenantKey": "Acme"}


def test_put_still_requires_required_attributes():
    assert err(normalize, {"active": False}, USERS, for_replace=True,
               existing={"userName": "u"}).scim_type == "invalidValue"


# --------------------------------------------------------------------------------------------
# error body and speed


def test_error_json():
    e = ScimError(400, "invalidValue", "bad")
    assert e.to_json() == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                           "status": "400", "scimType": "invalidValue", "detail": "bad"}
    assert "scimType" not in ScimError(404, None, "x").to_json()


def test_normalize_is_fast():
    body = {
        "schemas": [USER_URN, ENTERPRISE_USER_URN],
        "userName": "ada@example.com", "externalId": "x1", "active": "True", "password": "p",
        "name": {"givenName": "Ada", "familyName": "Lovelace"}, "displayName": "Ada L",
        "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
        "meta": {"resourceType": "User"},
        ENTERPRISE_USER_URN: {"employeeNumber": "42", "manager": "m1"},
    }
    normalize(body, USERS)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        normalize(body, USERS)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 150e-6, f"{per_call * 1e6:.1f} µs per user"  # ~10 µs on the dev box
