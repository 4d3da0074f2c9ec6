"""ledger.scim.patch: the RFC 7644 §3.5.2 PATCH engine and the group-members fast path."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.scim.patch import apply_group_member_patch, apply_patch, parse_operation
from ledger.scim.resource import ScimError, normalize
from ledger.scim.schema import (
    ENTERPRISE_USER_URN as ENT, GROUP_URN, USER_URN, Schema, default_group_schema,
    default_user_schema,
)

USERS = default_user_schema()
GROUPS = default_group_schema()
CUSTOM_URN = "urn:example:params:scim:schemas:extension:seatledger:2.0:User"
USERS_X = USERS.with_extension(Schema.from_json({
    "id": CUSTOM_URN, "name": "X",
    "attributes": [
        {"name": "tenantKey", "type": "string", "mutability": "immutable"},
        {"name": "badge", "type": "integer"},
        {"name": "required1", "type": "string", "required": True},
    ],
}))


def user(**extra) -> dict:
    body = {"userName": "ada@example.com", "active": True,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": True}]}
    body.update(extra)
    return {"id": "u-1", "meta": {"resourceType": "User", "version": 'W/"1"'},
            **normalize(body, USERS_X)}


def group(*ids: str, **extra) -> dict:
    return {"id": "g-1", **normalize({"displayName": "Engineers",
                                      "members": [{"value": i} for i in ids], **extra}, GROUPS)}


def patch(resource, *ops, schema=USERS_X, **kw):
    before = copy.deepcopy(resource)
    out, changed = apply_patch(resource, list(ops), schema, **kw)
    assert resource == before, "apply_patch modified its input"
    return out, changed


def fails(resource, *ops, schema=USERS_X) -> ScimError:
    before = copy.deepcopy(resource)
    with pytest.raises(ScimError) as ei:
        apply_patch(resource, list(ops), schema)
    assert resource == before
    assert ei.value.status == 400
    return ei.value


def member_ids(g: dict) -> list[str]:
    return [m["value"] for m in g.get("members", [])]


# --------------------------------------------------------------------------------------------
# operation syntax


@pytest.mark.parametrize("op", ["Add", "ADD", "add", "Replace", "replace", "REPLACE"])
def test_op_case_insensitive(op):
    out, changed = patch(user(), {"op": op, "path": "nickName", "value": "Countess"})
    assert out["nickName"] == "Countess" and changed == {"nickName"}


def test_remove_case_insensitive():
    out, _ = patch(user(nickName="x"), {"op": "Remove", "path": "nickName"})
    assert "nickName" not in out


@pytest.mark.parametrize("op", [
    {"op": "delete", "path": "nickName"},
    {"op": None, "path": "nickName", "value": "x"},
    {"path": "nickName", "value": "x"},
    {"op": "add", "path": "nickName"},            # add without value
    {"op": "add", "path": 5, "value": "x"},
    "add nickName",
])
def test_bad_operations_are_invalid_syntax(op):
    assert fails(user(), op).scim_type == "invalidSyntax"


def test_operations_must_be_a_list():
    with pytest.raises(ScimError) as ei:
        apply_patch(user(), {"op": "add"}, USERS)  # type: ignore[arg-type]
    assert ei.value.scim_type == "invalidSyntax"


def test_no_path_value_must_be_an_object():
    assert fails(user(), {"op": "replace", "value": "x"}).scim_type == "invalidSyntax"


def test_operation_keys_case_insensitive_and_stray_keys_ignored():
    assert parse_operation({"OP": "Add", "Path": " nickName ", "Value": 1, "name": "x"}) == \
        ("add", "nickName", 1)
    out, _ = patch(user(), {"op": "Replace", "name": "displayName", "path": "displayName",
                            "value": "Ada"})
    assert out["displayName"] == "Ada"


def test_empty_operation_list_changes_nothing():
    u = user()
    assert patch(u) == (u, set())


# --------------------------------------------------------------------------------------------
# add / replace, with and without path


def test_add_on_single_valued_attribute_replaces_it():
    u = user(displayName="Old")
    for op in ("add", "replace"):
        out, changed = patch(u, {"op": op, "path": "displayName", "value": "New"})
        assert out["displayName"] == "New" and changed == {"displayName"}


def test_no_change_reports_no_changed_path():
    out, changed = patch(user(), {"op": "replace", "path": "active", "value": True})
    assert changed == set()


def test_entra_no_path_replace_with_dotted_and_urn_keys():
    op = {"op": "replace", "value": {
        "name.givenName": "Ada",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
        "active": False}}
    out, changed = patch(user(name={"givenName": "A", "familyName": "L"}), op)
    assert out["name"] == {"givenName": "Ada", "familyName": "L"}
    assert out[ENT] == {"employeeNumber": "42"}
    assert out["active"] is False
    assert ENT in out["schemas"]
    assert changed == {"name", "active", f"{ENT}:employeeNumber"}


def test_no_path_extension_urn_key_with_object_value():
    out, changed = patch(user(), {"op": "add", "value": {ENT: {"department": "R&D",
                                                               "manager": "boss"}}})
    assert out[ENT] == {"department": "R&D", "manager": {"value": "boss"}}
    assert changed == {f"{ENT}:department", f"{ENT}:manager"}


def test_path_is_an_extension_urn():
    out, _ = patch(user(), {"op": "replace", "path": ENT, "value": {"costCenter": "42"}})
    assert out[ENT] == {"costCenter": "42"}
    out2, changed = patch(out, {"op": "remove", "path": ENT})
    assert ENT not in out2 and ENT not in out2["schemas"]
    assert changed == {f"{ENT}:costCenter"}


def test_okta_deactivation_no_path():
    out, changed = patch(user(), {"op": "replace", "value": {"active": False}})
    assert out["active"] is False and changed == {"active"}


@pytest.mark.parametrize("raw,expected", [("False", False), ("false", False), ("True", True)])
def test_entra_boolean_strings(raw, expected):
    out, _ = patch(user(active=not expected), {"op": "Replace", "path": "active", "value": raw})
    assert out["active"] is expected


def test_boolean_string_in_sub_attribute_and_no_path_value():
    out, _ = patch(user(), {"op": "replace", "path": "emails[type eq \"work\"].primary",
                            "value": "False"})
    assert out["emails"][0]["primary"] is False
    out, _ = patch(user(), {"op": "replace", "value": {"active": "False"}})
    assert out["active"] is False


def test_replace_complex_merges_sub_attributes_and_null_clears_one():
    out, _ = patch(user(), {"op": "replace", "path": "name", "value": {"middleName": "B"}})
    assert out["name"] == {"givenName": "Ada", "familyName": "Lovelace", "middleName": "B"}
    out, _ = patch(out, {"op": "replace", "path": "name", "value": {"middleName": None}})
    assert out["name"] == {"givenName": "Ada", "familyName": "Lovelace"}


def test_sub_attribute_path():
    out, changed = patch(user(), {"op": "replace", "path": "name.familyName", "value": "Byron"})
    assert out["name"]["familyName"] == "Byron" and changed == {"name"}
    out, _ = patch(user(name=None), {"op": "add", "path": "name.givenName", "value": "A"})
    assert out["name"] == {"givenName": "A"}


def test_urn_prefixed_core_path():
    out, _ = patch(user(), {"op": "replace", "path": f"{USER_URN}:userName", "value": "b"})
    assert out["userName"] == "b"


def test_case_insensitive_paths_use_schema_spelling():
    out, changed = patch(user(), {"op": "add", "path": "NAME.MIDDLENAME", "value": "B"},
                         {"op": "add", "path": ENT.upper() + ":EMPLOYEENUMBER", "value": "9"})
    assert out["name"]["middleName"] == "B" and out[ENT] == {"employeeNumber": "9"}
    assert changed == {"name", f"{ENT}:employeeNumber"}


def test_null_value_replace_unassigns():
    out, changed = patch(user(nickName="n"), {"op": "replace", "path": "nickName", "value": None})
    assert "nickName" not in out and changed == {"nickName"}


# --------------------------------------------------------------------------------------------
# multi-valued attributes


def test_add_appends_without_duplicates():
    u = user()
    new = {"value": "home@example.com", "type": "home"}
    out, changed = patch(u, {"op": "add", "path": "emails", "value": [new]})
    assert out["emails"] == u["emails"] + [new] and changed == {"emails"}
    out2, changed = patch(out, {"op": "add", "path": "emails", "value": [new]})
    assert out2 == out and changed == set()


def test_add_single_object_to_multi_valued():
    out, _ = patch(user(), {"op": "add", "path": "phoneNumbers", "value": {"value": "1"}})
    assert out["phoneNumbers"] == [{"value": "1"}]


def test_replace_multi_valued_without_filter_replaces_whole_list():
    out, _ = patch(user(), {"op": "replace", "path": "emails",
                            "value": [{"value": "x@y", "type": "other"}]})
    assert out["emails"] == [{"value": "x@y", "type": "other"}]


def test_new_primary_demotes_the_others():
    out, _ = patch(user(), {"op": "add", "path": "emails",
                            "value": [{"value": "b@x", "type": "home", "primary": True}]})
    assert [e.get("primary") for e in out["emails"]] == [False, True]


def test_two_new_primaries_refused():
    e = fails(user(), {"op": "add", "path": "emails", "value": [
        {"value": "b", "primary": True}, {"value": "c", "primary": True}]})
    assert e.scim_type == "invalidValue"


def test_value_filter_with_sub_attribute():
    out, changed = patch(user(), {"op": "replace", "path": "emails[type eq \"work\"].value",
                                  "value": "new@example.com"})
    assert out["emails"] == [{"value": "new@example.com", "type": "work", "primary": True}]
    assert changed == {"emails"}


def test_value_filter_replace_whole_element_keeps_eq_attributes():
    out, _ = patch(user(), {"op": "replace", "path": "emails[type eq \"work\"]",
                            "value": {"value": "w@x"}})
    assert out["emails"] == [{"type": "work", "value": "w@x"}]


def test_value_filter_add_merges_into_element():
    out, _ = patch(user(), {"op": "add", "path": "emails[type eq \"work\"]",
                            "value": {"display": "Work"}})
    assert out["emails"] == [{"value": "ada@example.com", "type": "work", "primary": True,
                              "display": "Work"}]


def test_entra_value_path_matching_nothing_creates_the_entry():
    op = {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"}
    out, changed = patch(user(), op)
    assert out["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]
    assert changed == {"phoneNumbers"}
    # the second time it matches and updates instead of adding another
    out2, _ = patch(out, {**op, "value": "+1 555 0199"})
    assert out2["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0199"}]


def test_replace_value_path_matching_nothing_creates_too():
    out, _ = patch(user(), {"op": "replace",
                            "path": "addresses[type eq \"work\"].streetAddress",
                            "value": "1 Main St"})
    assert out["addresses"] == [{"type": "work", "streetAddress": "1 Main St"}]
    out, _ = patch(user(), {"op": "replace", "path": "emails[type eq \"home\" and primary eq false]",
                            "value": {"value": "h@x"}})
    assert out["emails"][1] == {"type": "home", "primary": False, "value": "h@x"}


def test_unmatched_value_path_that_cannot_be_described_is_no_target():
    e = fails(user(), {"op": "add", "path": "phoneNumbers[type ne \"mobile\"].value",
                       "value": "1"})
    assert e.scim_type == "noTarget"


def test_created_entry_must_match_the_filter():
    e = fails(user(), {"op": "add", "path": "phoneNumbers[type eq \"mobile\"]",
                       "value": {"type": "work", "value": "1"}})
    assert e.scim_type == "invalidValue"


def test_sub_attribute_of_multi_valued_without_filter_sets_every_element():
    u = user(emails=[{"value": "a", "type": "work"}, {"value": "b", "type": "home"}])
    out, _ = patch(u, {"op": "replace", "path": "emails.display", "value": "E"})
    assert [e["display"] for e in out["emails"]] == ["E", "E"]
    out, _ = patch(out, {"op": "remove", "path": "emails.display"})
    assert out["emails"] == u["emails"]


# --------------------------------------------------------------------------------------------
# remove


def test_remove_without_path_is_no_target():
    assert fails(user(), {"op": "remove"}).scim_type == "noTarget"
    assert fails(user(), {"op": "remove", "value": {"nickName": "x"}}).scim_type == "noTarget"


def test_remove_value_path_matching_nothing_is_no_target():
    e = fails(user(), {"op": "remove", "path": "emails[type eq \"home\"]"})
    assert e.scim_type == "noTarget"


def test_remove_value_path():
    u = user(emails=[{"value": "a", "type": "work"}, {"value": "b", "type": "home"}])
    out, changed = patch(u, {"op": "remove", "path": "emails[type eq \"home\"]"})
    assert out["emails"] == [{"value": "a", "type": "work"}] and changed == {"emails"}
    out, _ = patch(out, {"op": "remove", "path": "emails[type eq \"work\"]"})
    assert "emails" not in out


def test_remove_sub_attribute_of_matching_elements():
    out, _ = patch(user(), {"op": "remove", "path": "emails[type eq \"work\"].primary"})
    assert out["emails"] == [{"value": "ada@example.com", "type": "work"}]


def test_remove_single_and_sub_attribute():
    out, changed = patch(user(), {"op": "remove", "path": "name.givenName"})
    assert out["name"] == {"familyName": "Lovelace"}
    out, _ = patch(out, {"op": "remove", "path": "name.familyName"})
    assert "name" not in out
    out, changed = patch(user(), {"op": "remove", "path": "emails"})
    assert "emails" not in out and changed == {"emails"}


def test_remove_absent_attribute_is_a_no_op():
    assert patch(user(), {"op": "remove", "path": "nickName"})[1] == set()


def test_remove_multi_valued_with_value_array():
    u = user(emails=[{"value": "a", "type": "work"}, {"value": "b", "type": "home"}])
    out, _ = patch(u, {"op": "remove", "path": "emails", "value": [{"value": "B"}]})
    assert out["emails"] == [{"value": "a", "type": "work"}]  # caseExact false


def test_remove_extension_attribute_drops_empty_extension():
    u = user(**{ENT: {"employeeNumber": "1"}})
    out, changed = patch(u, {"op": "remove",
                             "path": f"{ENT}:employeeNumber"})
    assert ENT not in out and out["schemas"] == [USER_URN]
    assert changed == {f"{ENT}:employeeNumber"}


def test_entra_manager_bare_string_and_removal():
    path = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
    out, _ = patch(user(), {"op": "Add", "path": path, "value": "boss-1"})
    assert out[ENT] == {"manager": {"value": "boss-1"}}
    out, _ = patch(out, {"op": "Replace", "path": path,
                         "value": {"value": "boss-2", "$ref": None}})
    assert out[ENT] == {"manager": {"value": "boss-2"}}
    out, _ = patch(out, {"op": "Remove", "path": path})
    assert ENT not in out


def test_new_manager_drops_the_old_ref():
    u = user(**{ENT: {"manager": {"value": "b1", "$ref": "../Users/b1"}}})
    out, _ = patch(u, {"op": "replace", "path": f"{ENT}:manager", "value": "b2"})
    assert out[ENT]["manager"] == {"value": "b2"}


# --------------------------------------------------------------------------------------------
# errors: path, mutability, required, types


@pytest.mark.parametrize("path", ["nope", "name.nope", "emails[nope eq \"x\"]", "emails[type eq",
                                  "urn:unknown:schema:attr", "emails[type eq \"x\"]]"])
def test_unknown_or_malformed_path_is_invalid_path(path):
    assert fails(user(), {"op": "replace", "path": path, "value": "x"}).scim_type == \
        "invalidPath"


@pytest.mark.parametrize("path,value", [
    ("id", "x"), ("meta", {"version": "x"}), ("groups", [{"value": "g"}]),
    ("meta.version", "x"), ("groups[value eq \"g\"]", {"value": "g"}),
])
@pytest.mark.parametrize("op", ["add", "replace", "remove"])
def test_read_only_paths_are_mutability_errors(path, value, op):
    assert fails(user(), {"op": op, "path": path, "value": value}).scim_type == "mutability"


def test_stray_id_and_read_only_keys_in_value_object_ignored():
    out, changed = patch(user(), {"op": "replace", "value": {"id": "other", "meta": {},
                                                             "groups": [], "schemas": [],
                                                             "displayName": "Ada"}})
    assert out["id"] == "u-1" and changed == {"displayName"}


def test_unknown_key_in_value_object():
    assert fails(user(), {"op": "replace", "value": {"colour": "red"}}).scim_type == \
        "invalidValue"
    out, _ = patch(user(), {"op": "replace", "value": {"colour": "red", "title": "T"}},
                   ignore_unknown=True)
    assert out["title"] == "T"


def test_immutable_attribute():
    u = user()
    out, _ = patch(u, {"op": "add", "path": f"{CUSTOM_URN}:tenantKey", "value": "K"},
                   {"op": "add", "path": f"{CUSTOM_URN}:required1", "value": "r"})
    # may be set when unassigned, re-set equal, not changed nor removed
    assert patch(out, {"op": "replace", "path": f"{CUSTOM_URN}:tenantKey", "value": "K"})[1] == \
        set()
    for op in ({"op": "replace", "path": f"{CUSTOM_URN}:tenantKey", "value": "L"},
               {"op": "remove", "path": f"{CUSTOM_URN}:tenantKey"},
               {"op": "replace", "value": {CUSTOM_URN: {"tenantKey": "M"}}}):
        assert fails(out, op).scim_type == "mutability"


def test_group_member_sub_attributes_are_immutable():
    g = group("a")
    e = fails(g, {"op": "replace", "path": "members[value eq \"a\"].value", "value": "b"},
              schema=GROUPS)
    assert e.scim_type == "mutability"


def test_removing_required_attribute_is_mutability():
    assert fails(user(), {"op": "remove", "path": "userName"}).scim_type == "mutability"
    assert fails(user(), {"op": "replace", "path": "userName", "value": None}).scim_type == \
        "mutability"
    assert fails(group("a"), {"op": "remove", "path": "displayName"},
                 schema=GROUPS).scim_type == "mutability"


def test_required_attribute_cannot_become_empty():
    assert fails(user(), {"op": "replace", "path": "userName", "value": ""}).scim_type == \
        "invalidValue"


@pytest.mark.parametrize("path,value", [
    ("active", "maybe"), ("active", 1), ("userName", 5), ("name", "Ada Lovelace"),
    ("emails", [{"value": 1}]), ("displayName", ["a", "b"]), ("nickName", "a\u0000"),
    (f"{CUSTOM_URN}:badge", "x1"), ("emails", [{"value": "a", "colour": "red"}]),
])
def test_wrong_types_are_invalid_value(path, value):
    assert fails(user(), {"op": "replace", "path": path, "value": value}).scim_type == \
        "invalidValue"


def test_integer_string_coerced():
    out, _ = patch(user(), {"op": "add", "path": f"{CUSTOM_URN}:badge", "value": "12"})
    assert out[CUSTOM_URN]["badge"] == 12


def test_failure_after_successful_ops_leaves_input_unchanged():
    u = user()
    fails(u, {"op": "replace", "path": "displayName", "value": "X"},
          {"op": "add", "path": "emails", "value": [{"value": "z"}]},
          {"op": "replace", "path": "id", "value": "y"})


# --------------------------------------------------------------------------------------------
# members in apply_patch


def test_entra_member_add_with_null_ref():
    op = {"op": "Add", "path": "members", "value": [{"value": "u-9", "$ref": None}]}
    out, changed = patch(group("u-1"), op, schema=GROUPS)
    assert member_ids(out) == ["u-1", "u-9"] and changed == {"members"}
    assert out["members"][1] == {"value": "u-9"}
    assert patch(out, op, schema=GROUPS)[1] == set()  # dedupe by value


@pytest.mark.parametrize("value", [[{"value": "u-2"}], [{"value": "u-2", "$ref": None}]])
def test_entra_member_removal_value_array(value):
    out, _ = patch(group("u-1", "u-2"), {"op": "Remove", "path": "members", "value": value},
                   schema=GROUPS)
    assert member_ids(out) == ["u-1"]


def test_entra_member_removal_filter_and_idempotence():
    op = {"op": "remove", "path": "members[value eq \"u-2\"]"}
    out, _ = patch(group("u-1", "u-2"), op, schema=GROUPS)
    assert member_ids(out) == ["u-1"]
    assert patch(out, op, schema=GROUPS) == (out, set())  # retry: no-op, not noTarget


def test_remove_all_members():
    out, _ = patch(group("a", "b"), {"op": "remove", "path": "members"}, schema=GROUPS)
    assert "members" not in out


def test_okta_group_rename_with_id_and_membership():
    ops = [{"op": "replace", "value": {"id": "g-1", "displayName": "Renamed"}},
           {"op": "remove", "path": "members[value eq \"a\"]"},
           {"op": "add", "path": "members", "value": [{"value": "c", "display": "C"}]}]
    out, changed = patch(group("a", "b"), *ops, schema=GROUPS)
    assert out["displayName"] == "Renamed" and member_ids(out) == ["b", "c"]
    assert out["id"] == "g-1" and changed == {"displayName", "members"}


def test_okta_replace_members():
    out, _ = patch(group("a", "b"), {"op": "replace", "path": "members",
                                     "value": [{"value": "b"}, {"value": "c"}]}, schema=GROUPS)
    assert member_ids(out) == ["b", "c"]


def test_entra_group_patch_with_adscim_free_body():
    g = group()
    out, _ = patch(g, {"op": "Add", "path": "members",
                       "value": [{"value": "x", "$ref": None}, {"value": "y"}]},
                   {"op": "Replace", "path": "displayName", "value": "G2"}, schema=GROUPS)
    assert member_ids(out) == ["x", "y"] and out["displayName"] == "G2"


# --------------------------------------------------------------------------------------------
# apply_group_member_patch


class CountingSet(set):
    """A set that fails the test if it is iterated (cost must not depend on the group size)."""

    def __iter__(self):
        raise AssertionError("member_ids was iterated")


def test_member_patch_cost_is_proportional_to_the_change():
    members = CountingSet(f"u{i}" for i in range(50_000))
    new = [{"value": f"n{i}", "$ref": None} for i in range(1_000)]
    ops = [{"op": "Add", "path": "members", "value": new},
           {"op": "Remove", "path": "members", "value": [{"value": "u1"}, {"value": "zz"}]},
           {"op": "remove", "path": "members[value eq \"u2\"]"},
           {"op": "remove", "path": "members[value eq \"u3\" or value eq \"u4\"]"},
           {"op": "Replace", "path": "displayName", "value": "Big"}]
    added, removed, other = apply_group_member_patch(members, ops)
    assert added == [f"n{i}" for i in range(1_000)]
    assert removed == ["u1", "u2", "u3", "u4"]
    assert other == [ops[-1]]
    assert len(members) == 50_000


def test_member_patch_net_effect():
    added, removed, other = apply_group_member_patch(
        {"a", "b"},
        [{"op": "add", "path": "members", "value": [{"value": "c"}, {"value": "a"}]},
         {"op": "remove", "path": "members", "value": [{"value": "c"}]},   # added then removed
         {"op": "remove", "path": "members", "value": [{"value": "b"}]},
         {"op": "add", "path": "members", "value": [{"value": "b"}]}])     # removed then re-added
    assert (added, removed, other) == ([], [], [])


def test_member_patch_replace_and_remove_all():
    assert apply_group_member_patch({"a", "b"}, [
        {"op": "replace", "path": "members", "value": [{"value": "b"}, {"value": "c"}]}
    ]) == (["c"], ["a"], [])
    added, removed, _ = apply_group_member_patch({"a", "b"}, [
        {"op": "remove", "path": "members"}])
    assert added == [] and sorted(removed) == ["a", "b"]
    added, removed, _ = apply_group_member_patch({"a"}, [
        {"op": "replace", "path": "members", "value": []}])
    assert (added, removed) == ([], ["a"])


def test_member_patch_no_path_value_object_split():
    ops = [{"op": "replace", "value": {"id": "g-1", "displayName": "N",
                                       "members": [{"value": "x"}]}}]
    added, removed, other = apply_group_member_patch({"a"}, ops)
    assert (added, removed) == (["x"], ["a"])
    assert other == [{"op": "replace", "value": {"id": "g-1", "displayName": "N"}}]
    out, changed = apply_patch(group(), other, GROUPS)
    assert out["displayName"] == "N" and changed == {"displayName"}


def test_member_patch_urn_prefixed_and_general_filters():
    added, removed, _ = apply_group_member_patch({"a", "ab", "b"}, [
        {"op": "remove", "path": f"{GROUP_URN}:members[value sw \"a\"]"}])
    assert added == [] and sorted(removed) == ["a", "ab"]
    added, _, _ = apply_group_member_patch(set(), [
        {"op": "add", "path": "Members[value eq \"q\"]", "value": {"value": "q"}}])
    assert added == ["q"]


def test_member_patch_errors():
    def code(ops):
        with pytest.raises(ScimError) as ei:
            apply_group_member_patch({"a"}, ops)
        return ei.value.scim_type

    assert code([{"op": "remove"}]) == "noTarget"
    assert code([{"op": "move", "path": "members"}]) == "invalidSyntax"
    assert code([{"op": "add", "path": "members", "value": [{"display": "x"}]}]) == "invalidValue"
    assert code([{"op": "add", "path": "members", "value": [{"value": ""}]}]) == "invalidValue"
    assert code([{"op": "replace", "path": "members[value eq \"a\"].value",
                  "value": "b"}]) == "mutability"
    assert code([{"op": "remove", "path": "members[nope eq \"a\"]"}]) == "invalidPath"


def test_member_patch_remove_non_member_is_no_op():
    assert apply_group_member_patch({"a"}, [
        {"op": "remove", "path": "members[value eq \"zz\"]"},
        {"op": "Remove", "path": "members", "value": [{"value": "yy", "$ref": None}]},
    ]) == ([], [], [])


# --------------------------------------------------------------------------------------------
# properties

TYPES = ["work", "home", "other"]
PHONE_TYPES = ["work", "home", "mobile", "fax", "pager", "other"]
text = st.text(alphabet="abcXYZ09 @.-", min_size=1, max_size=8)


@st.composite
def users(draw) -> dict:
    body: dict = {"userName": draw(text)}
    if draw(st.booleans()):
        body["active"] = draw(st.booleans())
    if draw(st.booleans()):
        body["name"] = {"givenName": draw(text), "familyName": draw(text)}
    types = draw(st.lists(st.sampled_from(TYPES), unique=True, max_size=3))
    if types:
        primary = draw(st.sampled_from([None] + types))
        body["emails"] = [{"value": draw(text), "type": t, **({"primary": True}
                                                               if t == primary else {})}
                          for t in types]
    ptypes = draw(st.lists(st.sampled_from(PHONE_TYPES), unique=True, max_size=3))
    if ptypes:
        body["phoneNumbers"] = [{"value": draw(text), "type": t} for t in ptypes]
    if draw(st.booleans()):
        body[ENT] = {"employeeNumber": draw(text)}
    return normalize(body, USERS)


valid_ops = st.one_of(
    st.builds(lambda op, v: {"op": op, "path": "nickName", "value": v},
              st.sampled_from(["add", "Replace"]), text),
    st.builds(lambda v: {"op": "Replace", "path": "active", "value": v},
              st.sampled_from(["True", "False", True, False])),
    st.builds(lambda t, v: {"op": "Add", "path": f'emails[type eq "{t}"].value', "value": v},
              st.sampled_from(TYPES), text),
    st.builds(lambda t, v: {"op": "add", "path": "phoneNumbers",
                            "value": [{"type": t, "value": v}]},
              st.sampled_from(PHONE_TYPES), text),
    st.builds(lambda v: {"op": "replace", "value": {"name.givenName": v,
                                                    f"{ENT}:employeeNumber": v}}, text),
    st.just({"op": "remove", "path": "name"}),
    st.just({"op": "remove", "path": f"{ENT}:employeeNumber"}),
    st.builds(lambda v: {"op": "replace", "path": "userName", "value": v}, text),
)
invalid_ops = st.sampled_from([
    {"op": "remove", "path": "userName"},
    {"op": "replace", "path": "id", "value": "x"},
    {"op": "add", "path": "nope", "value": 1},
    {"op": "remove"},
    {"op": "frob", "path": "nickName", "value": "x"},
    {"op": "replace", "path": "active", "value": "maybe"},
    {"op": "remove", "path": "emails[type eq \"nonexistent\"]"},
    {"op": "add", "path": "emails", "value": [{"value": "p", "primary": True},
                                              {"value": "q", "primary": True}]},
])

FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(users(), st.lists(valid_ops, max_size=6), invalid_ops, st.lists(valid_ops, max_size=3))
def test_property_atomic(resource, before, bad, after):
    """A failing operation list raises and leaves the input unchanged; valid lists never
    modify their input either, and always yield a canonical resource."""
    snapshot = copy.deepcopy(resource)
    with pytest.raises(ScimError) as ei:
        apply_patch(resource, before + [bad] + after, USERS)
    assert ei.value.status == 400
    assert resource == snapshot
    out, changed = apply_patch(resource, before, USERS)
    assert resource == snapshot
    assert normalize(out, USERS) == out          # the result is canonical (and valid)
    for key in changed:                          # changed names exactly what differs
        attr = key.rsplit(":", 1)[-1]
        c_new = out.get(ENT, {}) if key.startswith(ENT) else out
        c_old = resource.get(ENT, {}) if key.startswith(ENT) else resource
        assert c_new.get(attr) != c_old.get(attr)


@FAST
@given(users(), st.sampled_from(PHONE_TYPES), text)
def test_property_add_then_remove_value_path_round_trips(resource, ptype, value):
    """Adding a value path that matches nothing, then removing it, restores the resource."""
    if any(p.get("type") == ptype for p in resource.get("phoneNumbers", [])):
        return
    path = f'phoneNumbers[type eq "{ptype}"]'
    added, changed = apply_patch(resource, [{"op": "Add", "path": f"{path}.value",
                                             "value": value}], USERS)
    assert changed == {"phoneNumbers"}
    assert {"type": ptype, "value": value} in added["phoneNumbers"]
    back, _ = apply_patch(added, [{"op": "Remove", "path": path}], USERS)
    assert back == resource


@FAST
@given(users(), text)
def test_property_add_then_remove_value_array_round_trips(resource, value):
    email = {"value": value + "@new", "type": "other"}
    if any(e.get("value") == email["value"] for e in resource.get("emails", [])):
        return
    added, _ = apply_patch(resource, [{"op": "add", "path": "emails", "value": [email]}], USERS)
    back, _ = apply_patch(added, [{"op": "remove", "path": "emails",
                                   "value": [{"value": email["value"]}]}], USERS)
    assert back == resource


ids = st.sampled_from([f"m{i}" for i in range(8)])
member_values = st.lists(st.builds(lambda i, ref: {"value": i, **({"$ref": None} if ref else {})},
                                   ids, st.booleans()), max_size=4)
member_ops = st.one_of(
    st.builds(lambda op, v: {"op": op, "path": "members", "value": v},
              st.sampled_from(["add", "Add", "replace", "remove", "Remove"]), member_values),
    st.builds(lambda i: {"op": "remove", "path": f'members[value eq "{i}"]'}, ids),
    st.just({"op": "remove", "path": "members"}),
    st.builds(lambda v: {"op": "replace", "value": {"id": "g", "displayName": "G",
                                                    "members": v}}, member_values),
)


@FAST
@given(st.sets(ids, max_size=8), st.lists(member_ops, max_size=8))
def test_property_member_fast_path_agrees_with_apply_patch(start, ops):
    g = group(*sorted(start))
    out, changed = apply_patch(g, ops, GROUPS)
    added, removed, other = apply_group_member_patch(frozenset(start), ops)
    final = (start - set(removed)) | set(added)
    assert set(member_ids(out)) == final
    assert not set(added) & start and set(removed) <= start
    assert len(set(added)) == len(added) and len(set(removed)) == len(removed)
    assert ("members" in changed) == bool(added or removed)
    rest, _ = apply_patch({k: v for k, v in g.items() if k != "members"}, other, GROUPS)
    assert rest["displayName"] == out["displayName"]
