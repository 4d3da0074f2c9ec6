"""SCIM filters: parser, binder, in-memory evaluator and the SQL compiler (checked against a real
PostgreSQL, including a property test that the two always agree)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.scim.filter import (
    And,
    AttrPath,
    BoundPath,
    Compare,
    FilterError,
    Not,
    Or,
    PathError,
    Present,
    ValueFilter,
    ValuePath,
    bind,
    bind_path,
    evaluate,
    format_filter,
    parse_datetime,
    parse_filter,
    parse_path,
    sort_value,
    value_filter_template,
    values_of,
)
from ledger.scim.schema import ENTERPRISE_USER_URN, Schema, casefold_doc, default_group_schema, default_user_schema
from projections.scim_filter_sql import compile_filter, compile_sort, like_escape

ENT = ENTERPRISE_USER_URN
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
TEST_EXT = Schema.from_json({
    "id": "urn:example:params:scim:schemas:extension:test:2.0:User",
    "name": "TestUser",
    "attributes": [
        {"name": "level", "type": "integer"},
        {"name": "score", "type": "decimal"},
        {"name": "tags", "type": "string", "multiValued": True, "caseExact": True},
        {"name": "nick", "type": "string", "caseExact": True},
        {"name": "badge", "type": "binary", "caseExact": True},
    ],
})
TX = TEST_EXT.id
RS = default_user_schema().with_extension(TEST_EXT)


def a(attr, sub=None, uri=None):
    return AttrPath(attr, sub, uri)


def eq(path, value):
    return Compare(path, "eq", value)


# ------------------------------------------------------------------------------------------
# Parser


@pytest.mark.parametrize(
    "text, ast",
    [
        ('userName eq "bjensen"', eq(a("userName"), "bjensen")),
        ('name.familyName co "O\'Malley"', Compare(a("name", "familyName"), "co", "O'Malley")),
        ('userName sw "J"', Compare(a("userName"), "sw", "J")),
        ('userName ew "son"', Compare(a("userName"), "ew", "son")),
        ('title ne "boss"', Compare(a("title"), "ne", "boss")),
        (f'{USER}:userName sw "J"', Compare(a("userName", uri=USER), "sw", "J")),
        (f'{USER}:name.givenName eq "x"', eq(a("name", "givenName", USER), "x")),
        (f'{ENT}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d"',
         eq(a("manager", "value", ENT), "26118915-6090-4610-87e4-49d8ca9f808d")),
        ("title pr", Present(a("title"))),
        ('meta.lastModified gt "2011-05-13T04:42:34Z"',
         Compare(a("meta", "lastModified"), "gt", "2011-05-13T04:42:34Z")),
        ('meta.lastModified ge "2011-05-13T04:42:34Z"',
         Compare(a("meta", "lastModified"), "ge", "2011-05-13T04:42:34Z")),
        ('meta.lastModified lt "2011-05-13T04:42:34Z"',
         Compare(a("meta", "lastModified"), "lt", "2011-05-13T04:42:34Z")),
        ('meta.lastModified le "2011-05-13T04:42:34Z"',
         Compare(a("meta", "lastModified"), "le", "2011-05-13T04:42:34Z")),
        ('title pr and userType eq "Employee"',
         And((Present(a("title")), eq(a("userType"), "Employee")))),
        ('title pr or userType eq "Intern"',
         Or((Present(a("title")), eq(a("userType"), "Intern")))),
        # precedence: and binds tighter than or; not tighter than and
        ('a eq 1 or b eq 2 and c eq 3',
         Or((eq(a("a"), 1), And((eq(a("b"), 2), eq(a("c"), 3)))))),
        ('a eq 1 and b eq 2 or c eq 3',
         Or((And((eq(a("a"), 1), eq(a("b"), 2))), eq(a("c"), 3)))),
        ('not (a pr) and b pr', And((Not(Present(a("a"))), Present(a("b"))))),
        ('userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
         And((eq(a("userType"), "Employee"),
              Or((Compare(a("emails"), "co", "example.com"),
                  Compare(a("emails", "value"), "co", "example.org")))))),
        ('userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
         And((Compare(a("userType"), "ne", "Employee"),
              Not(Or((Compare(a("emails"), "co", "example.com"),
                      Compare(a("emails", "value"), "co", "example.org"))))))),
        ('userType eq "Employee" and (emails.type eq "work")',
         And((eq(a("userType"), "Employee"), eq(a("emails", "type"), "work")))),
        ('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
         And((eq(a("userType"), "Employee"),
              ValueFilter(ValuePath(a("emails"), And((eq(a("type"), "work"),
                                                     Compare(a("value"), "co", "@example.com")))))))),
        ('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
         Or((ValueFilter(ValuePath(a("emails"), And((eq(a("type"), "work"),
                                                    Compare(a("value"), "co", "@example.com"))))),
             ValueFilter(ValuePath(a("ims"), And((eq(a("type"), "xmpp"),
                                                 Compare(a("value"), "co", "@foo.com")))))))),
        ('emails[not (type eq "work")]', ValueFilter(ValuePath(a("emails"), Not(eq(a("type"), "work"))))),
        # case-insensitive operators and keywords
        ('userName EQ "x" AND title Pr OR NOT (active Eq TRUE)',
         Or((And((eq(a("userName"), "x"), Present(a("title")))), Not(eq(a("active"), True))))),
        # JSON values
        ('x eq "a\\"b\\\\c\\u00e9\\n"', eq(a("x"), 'a"b\\cé\n')),
        ("x eq 42", eq(a("x"), 42)),
        ("x eq -1.5e3", eq(a("x"), Decimal("-1.5e3"))),
        ("x eq 0.25", eq(a("x"), Decimal("0.25"))),
        ("x eq true", eq(a("x"), True)),
        ("x eq false", eq(a("x"), False)),
        ("x eq null", eq(a("x"), None)),
        ("x eq False", eq(a("x"), False)),
        # sub-attributes and $ref
        ('groups.$ref eq "https://x/Groups/1"', eq(a("groups", "$ref"), "https://x/Groups/1")),
        # whitespace and parentheses
        ('  ( ( userName eq "x" ) )  ', eq(a("userName"), "x")),
        ('(a eq "1")and(b eq "2")', And((eq(a("a"), "1"), eq(a("b"), "2")))),
        ('not(a pr)', Not(Present(a("a")))),
        ('not not (a pr)', Not(Not(Present(a("a"))))),
        # an attribute named like a keyword followed by an operator stays an attribute
        ('not eq "x"', eq(a("not"), "x")),
        ('x eq ""', eq(a("x"), "")),
    ],
)
def test_parse(text, ast):
    assert parse_filter(text) == ast


@pytest.mark.parametrize(
    "text, ast",
    [
        # Entra: unquoted values after eq
        ("externalId eq jyoung", eq(a("externalId"), "jyoung")),
        ("externalId eq 7e2c-1", eq(a("externalId"), "7e2c-1")),
        ("externalId eq 00123", eq(a("externalId"), "00123")),
        ("userName eq a.b@c.com", eq(a("userName"), "a.b@c.com")),
        ("externalId eq 12345", eq(a("externalId"), 12345)),
        # Entra: a value path followed by a sub-attribute comparison
        ('emails[type eq "work"].value eq "x@y.com"',
         eq(ValuePath(a("emails"), eq(a("type"), "work"), "value"), "x@y.com")),
        ('emails[type eq "work"].value pr',
         Present(ValuePath(a("emails"), eq(a("type"), "work"), "value"))),
        ('userName eq "x" and emails[type eq "work"].value co "y"',
         And((eq(a("userName"), "x"),
              Compare(ValuePath(a("emails"), eq(a("type"), "work"), "value"), "co", "y")))),
        # lenient `not` without parentheses
        ('not userName eq "x"', Not(eq(a("userName"), "x"))),
    ],
)
def test_parse_idp_forms(text, ast):
    assert parse_filter(text) == ast


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty filter"),
        ("   ", "empty filter"),
        ("userName", "expected an operator"),
        ('userName "x"', "expected an operator"),
        ("userName eq", "expected a value"),
        ('userName zz "x"', "unknown operator 'zz'"),
        ('userName like "x"', "unknown operator 'like'"),
        ('userName eq "x" and', "end of filter"),
        ('userName eq "x" or', "end of filter"),
        ('and userName eq "x"', "unknown operator"),
        ('(userName eq "x"', "expected ')'"),
        ('userName eq "x")', "unexpected ')'"),
        ('userName eq "x" userName eq "y"', "unexpected 'userName'"),
        ('userName eq "unterminated', "unterminated string"),
        ('userName eq "bad \\q escape"', "invalid string literal"),
        ('userName eq "\\ud800"', "invalid character"),
        ('userName eq "\\u0000"', "invalid character"),
        ("userName eq John Smith", "unexpected 'Smith'"),
        ('1userName eq "x"', "invalid attribute path"),
        ('name.givenName.x eq "x"', "invalid attribute path"),
        ('user@name eq "x"', "invalid attribute path"),
        ('emails[type eq "work"', "expected ']'"),
        ('emails[]', "empty value filter"),
        ('emails[type eq "work"] eq "x"', "unexpected 'eq'"),
        ('emails[type[value eq "x"] eq "y"]', "cannot be nested"),
        ('emails[name.givenName eq "x"]', "plain sub-attribute"),
        (f'emails[{USER}:type eq "x"]', "plain sub-attribute"),
        ('emails[type eq "work"].1x eq "y"', "invalid sub-attribute"),
        ('emails.value[type eq "work"]', "plain attribute before '['"),
        ('emails[type eq "work"].value', "expected an operator"),
        ('userName pr "x"', "unexpected '\"x\"'"),
        ("not", "expected an operator after 'not'"),
        ("not ()", "expected an attribute path"),
        ("()", "expected an attribute path"),
        ('"x" eq userName', "expected an attribute path"),
        ("(" * 60 + "a pr" + ")" * 60, "nested deeper"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(FilterError, match=re.escape(message)):
        parse_filter(text)


def test_filter_error_is_a_value_error():
    assert issubclass(FilterError, ValueError) and issubclass(PathError, FilterError)
    with pytest.raises(ValueError):
        parse_filter("x eq")


def test_long_and_chains_are_flat():
    text = " and ".join(f'a{i} eq "{i}"' for i in range(3000))
    node = parse_filter(text)
    assert isinstance(node, And) and len(node.operands) == 3000


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "bjensen"',
        'emails[type eq "work" and value co "@x.com"]',
        'emails[type eq "work"].value eq "x"',
        'not (a pr) or (b eq 1 and c ne -2.5)',
        'x eq "quote\\" and backslash\\\\ and ß"',
        f'{ENT}:manager.value eq null',
    ],
)
def test_format_roundtrip(text):
    ast = parse_filter(text)
    assert parse_filter(format_filter(ast)) == ast


# ------------------------------------------------------------------------------------------
# PATCH paths


@pytest.mark.parametrize(
    "text, path",
    [
        ("userName", a("userName")),
        ("name.givenName", a("name", "givenName")),
        ('members[value eq "2819c223"]', ValuePath(a("members"), eq(a("value"), "2819c223"))),
        ('phoneNumbers[type eq "mobile"].value', ValuePath(a("phoneNumbers"), eq(a("type"), "mobile"), "value")),
        ('emails[type eq "work" and primary eq true].display',
         ValuePath(a("emails"), And((eq(a("type"), "work"), eq(a("primary"), True))), "display")),
        (f"{ENT}:employeeNumber", a("employeeNumber", uri=ENT)),
        (f"{ENT}:manager.value", a("manager", "value", ENT)),
        (f'{USER}:emails[type eq "work"].value', ValuePath(a("emails", uri=USER), eq(a("type"), "work"), "value")),
        ('addresses[type eq "work"].streetAddress',
         ValuePath(a("addresses"), eq(a("type"), "work"), "streetAddress")),
        # a bare extension URN parses (uri + last segment); see parse_path's docstring
        (ENT, a("User", uri="urn:ietf:params:scim:schemas:extension:enterprise:2.0")),
    ],
)
def test_parse_path(text, path):
    assert parse_path(text) == path


@pytest.mark.parametrize(
    "text",
    ["", "   ", "a b", 'members[value eq "x"', 'members[value eq "x"] extra', "1x", "a.b.c",
     '"x"', "members[]", 'members[value eq "x"].', "(userName)"],
)
def test_parse_path_errors(text):
    with pytest.raises(PathError):
        parse_path(text)


def test_value_filter_template():
    users, groups = default_user_schema(), default_group_schema()
    vf = bind_path('phoneNumbers[Type eq "mobile"].value', users).value_filter
    assert value_filter_template(vf) == {"type": "mobile"}
    vf = bind_path('emails[type eq "work" and primary eq true]', users).value_filter
    assert value_filter_template(vf) == {"type": "work", "primary": True}
    assert value_filter_template(bind_path('members[value eq "u1"]', groups).value_filter) == {"value": "u1"}
    for path in ('emails[type ne "work"]', 'emails[type eq "a" or type eq "b"]', 'emails[value pr]',
                 'emails[type eq "a" and type eq "b"]', 'emails[not (type eq "a")]'):
        assert value_filter_template(bind_path(path, users).value_filter) is None, path


def test_bind_path_for_patch():
    users, groups = default_user_schema(), default_group_schema()
    bp = bind_path('phoneNumbers[type eq "mobile"].value', users)
    assert bp.attribute.name == "phoneNumbers" and bp.sub.name == "value"
    assert evaluate(bp.value_filter, {"type": "Mobile", "value": "1"})
    assert not evaluate(bp.value_filter, {"type": "work"})
    m = bind_path('MEMBERS[Value eq "abc"]', groups)
    assert m.attribute.name == "members" and m.sub is None
    assert evaluate(m.value_filter, {"value": "ABC"})  # members.value is caseExact=false
    assert bind_path("password", users).attribute.name == "password"  # PATCH may set it
    r = bind_path(f"{ENT.upper()}:MANAGER.VALUE", users)
    assert (r.attribute.name, r.sub.name, r.keys, r.extension) == ("manager", "value", (ENT, "manager"), True)
    assert r.resolved.canonical == f"{ENT}:manager.value"
    for bad in ("nope", 'members[value eq "x"]', "name.nope", 'userName[value eq "x"]', 'emails[nope eq "x"]',
                'emails[type eq "x"].nope', "urn:x:y:userName"):
        with pytest.raises(PathError):
            bind_path(bad, users)


# ------------------------------------------------------------------------------------------
# Binding


def test_bind_canonicalises_paths():
    f = bind(f'USERNAME eq "x" and {ENT.lower()}:DEPARTMENT eq "y" and Name.GivenName pr', RS)
    p0, p1, p2 = (o.path for o in f.operands)
    assert isinstance(p0, BoundPath) and str(p0) == "userName" and p0.keys == ("userName",)
    assert p1.keys == (ENT, "department") and p1.extension and str(p1) == f"{ENT}:department"
    assert p2.attribute.name == "name" and p2.sub.name == "givenName"


def test_bind_implicit_value_sub_attribute():
    f = bind('emails co "@x"', RS)
    assert f.path.sub.name == "value" and f.path.implicit_value
    m = bind(f'{ENT}:manager eq "boss"', RS)  # Entra may treat manager as a bare id
    assert m.path.sub.name == "value"
    assert evaluate(m, {ENT: {"manager": {"value": "BOSS"}}})
    p = bind("emails pr", RS)  # pr on the attribute itself, not its value
    assert p.path.sub is None


def test_bind_null_comparisons():
    assert bind("title eq null", RS) == Not(Present(bind("title pr", RS).path))
    assert bind("title ne null", RS) == bind("title pr", RS)
    with pytest.raises(FilterError, match="null"):
        bind("title gt null", RS)


def test_bind_coerces_values():
    assert bind("active eq \"False\"", RS).value is False  # Entra sends booleans as strings
    assert bind("externalId eq 12345", RS).value == "12345"
    assert bind("title eq true", RS).value == "true"
    assert bind(f"{TX}:level gt 3", RS).value == Decimal(3)
    assert bind(f'{TX}:score le "2.5"', RS).value == Decimal("2.5")
    assert bind('meta.created gt "2020-01-01T01:00:00+01:00"', RS).value == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert bind('meta.created sw "2020-01"', RS).value == "2020-01"


@pytest.mark.parametrize(
    "text, message",
    [
        ('nope eq "x"', "unknown attribute 'nope'"),
        ('name.nope eq "x"', "unknown sub-attribute 'nope'"),
        ('userName.value eq "x"', "has no sub-attributes"),
        ('urn:example:nope:2.0:User:userName eq "x"', "unknown schema"),
        ('department eq "x"', "unknown attribute"),
        ('emails[nope eq "x"]', "unknown sub-attribute 'nope'"),
        ('emails[type eq "work"].nope eq "x"', "unknown sub-attribute 'nope'"),
        ('userName[value eq "x"]', "needs a complex attribute"),
        ('active gt true', "not allowed on boolean"),
        ('active co "t"', "not allowed on boolean"),
        ('emails.primary ge false', "not allowed on boolean"),
        ('x509Certificates.value gt "a"', "not allowed on binary"),
        ('x509Certificates gt "a"', "not allowed on binary"),
        (f'{TX}:badge lt "a"', "not allowed on binary"),
        (f'{TX}:level co "1"', "not allowed on integer"),
        (f'{TX}:score sw "1"', "not allowed on decimal"),
        ('name eq "x"', "is complex"),
        ('name gt "x"', "is complex"),
        ('meta eq "x"', "is complex"),
        ('addresses co "x"', "is complex"),
        ('active eq "yes"', "is a boolean"),
        ('active eq 1', "is a boolean"),
        (f'{TX}:level eq "many"', "is a number"),
        (f'{TX}:level eq true', "is a number"),
        ('meta.created gt "yesterday"', "not a valid dateTime"),
        ('meta.created gt 5', "is a dateTime"),
        ('meta.created eq "2020-02-30T00:00:00Z"', "not a valid dateTime"),
        ('password eq "secret"', "cannot be used in a filter"),
        ('password pr', "cannot be used in a filter"),
    ],
)
def test_bind_errors(text, message):
    with pytest.raises(FilterError, match=re.escape(message)):
        bind(parse_filter(text), RS)


def test_unbound_ast_is_rejected():
    with pytest.raises(TypeError, match="bind"):
        evaluate(parse_filter('userName eq "x"'), {})
    with pytest.raises(TypeError, match="bind"):
        compile_filter(parse_filter('userName eq "x"'), [])


# ------------------------------------------------------------------------------------------
# Evaluator

BJENSEN = {
    "schemas": [USER, ENT],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "701984",
    "userName": "bjensen@example.com",
    "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara"},
    "displayName": "Babs Jensen",
    "title": "Tour Guide",
    "userType": "Employee",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
    "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
    ENT: {"employeeNumber": "701984", "department": "Tour Operations",
          "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}},
    TX: {"level": 3, "score": 2.5, "tags": ["Red", "blue"], "nick": "Babs"},
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ('userName eq "BJENSEN@example.com"', True),  # caseExact=false
        ('userName ne "bjensen@example.com"', False),
        ('userName sw "bJ"', True),
        ('userName ew ".COM"', True),
        ('userName co "@EXAMPLE"', True),
        ('userName gt "a"', True),
        ('userName lt "a"', False),
        ('externalId eq 701984', True),
        ('id eq "2819C223-7F76-453A-919D-413861904646"', False),  # id is caseExact
        (f'{TX}:nick eq "babs"', False),  # caseExact extension attribute
        (f'{TX}:nick eq "Babs"', True),
        ('name.givenName eq "barbara"', True),
        ('name.middleName pr', False),
        ('name.middleName eq "x"', False),
        ('name.middleName ne "x"', True),  # missing attribute: not equal to anything
        ('not (name.middleName eq "x")', True),
        ('name pr', True),
        ('title pr and userType eq "Employee"', True),
        ('title pr and userType eq "Intern"', False),
        ('title pr or userType eq "Intern"', True),
        ('emails co "jensen.ORG"', True),
        ('emails.value ew "@example.com"', True),
        ('emails.type eq "HOME"', True),
        ('emails.value ne "babs@jensen.org"', True),  # any value differs
        ('not (emails.value eq "babs@jensen.org")', False),
        ('emails[type eq "work" and value co "@example.com"]', True),
        ('emails[type eq "home" and value co "@example.com"]', False),
        ('emails[type eq "work"].value eq "bjensen@example.com"', True),
        ('emails[type eq "home"].value eq "bjensen@example.com"', False),
        ('emails[type eq "other"].value ne "x"', True),  # no value at all: not equal
        ('emails[primary eq true].value sw "bjensen"', True),
        ('emails[not (primary eq true)].value sw "babs"', True),
        ('ims[type eq "xmpp"]', False),
        ('ims pr', False),
        ('not (ims pr)', True),
        ('ims.value ne "x"', True),
        ('ims.value eq null', True),
        ('emails.value eq null', False),
        ('phoneNumbers[type eq "work"] and emails[type eq "home"]', True),
        ('active eq true', True),
        ('active ne true', False),
        ('active eq "TRUE"', True),
        ('meta.created lt "2011-01-01T00:00:00Z"', True),
        ('meta.created eq "2010-01-23T05:56:22+01:00"', True),  # same instant
        ('meta.created eq "2010-01-23T04:56:22.000Z"', True),
        ('meta.created eq "2010-01-23T04:56:22"', True),  # offset-less = UTC
        ('meta.created gt "2010-01-23T04:56:22Z"', False),
        ('meta.created ge "2010-01-23T04:56:22Z"', True),
        ('meta.lastModified sw "2011-05"', True),
        ('meta.version pr', False),
        (f'{ENT}:department eq "tour operations"', True),
        (f'{ENT}:manager.value eq "26118915-6090-4610-87E4-49D8CA9F808D"', True),
        (f'{ENT}:manager.displayName co "smith"', True),
        (f'{ENT}:costCenter pr', False),
        (f'{TX}:level eq 3', True),
        (f'{TX}:level gt 2.99', True),
        (f'{TX}:score eq 2.50', True),
        (f'{TX}:score lt 2.5', False),
        (f'{TX}:tags eq "red"', False),  # caseExact simple multi-valued
        (f'{TX}:tags eq "Red"', True),
        (f'{TX}:tags sw "bl"', True),
        (f'{TX}:tags pr', True),
        ('groups pr', False),
        ('x509Certificates eq "abc"', False),
    ],
)
def test_evaluate(text, expected):
    assert evaluate(bind(text, RS), BJENSEN) is expected


@pytest.mark.parametrize(
    "text, on_missing",
    [
        ('title eq "x"', False), ('title ne "x"', True), ('title co "x"', False), ('title sw "x"', False),
        ('title ew "x"', False), ('title gt "x"', False), ('title ge "x"', False), ('title lt "x"', False),
        ('title le "x"', False), ("title pr", False), ('not (title eq "x")', True), ("not (title pr)", True),
        ('emails.value eq "x"', False), ('emails.value ne "x"', True), ('emails[type eq "x"]', False),
        ('not (emails[type eq "x"])', True), ("emails pr", False), ("active eq true", False),
        ("active ne true", True), ("active eq false", False), ('meta.created lt "2999-01-01T00:00:00Z"', False),
        (f"{TX}:level lt 100", False), (f"{TX}:level ne 100", True), ("title eq null", True),
    ],
)
@pytest.mark.parametrize(
    "resource",
    [
        {"userName": "u"},
        {"userName": "u", "title": None, "emails": [], "active": None, "meta": {}, TX: {}},
        {"userName": "u", "emails": None, "meta": None, TX: None},
    ],
    ids=["absent", "null-or-empty", "null-containers"],
)
def test_missing_attribute_semantics(text, on_missing, resource):
    assert evaluate(bind(text, RS), resource) is on_missing


def test_empty_string_is_not_present():
    f = bind("title pr", RS)
    assert not evaluate(f, {"title": ""})
    assert evaluate(f, {"title": " "})
    assert not evaluate(bind("emails pr", RS), {"emails": [{"value": ""}, {}]})
    assert evaluate(bind("emails pr", RS), {"emails": [{"primary": False}]})
    assert evaluate(bind('title eq ""', RS), {"title": ""})


def test_unicode_case_folding():
    assert evaluate(bind('userName eq "STRASSE"', RS), {"userName": "straße"})
    assert evaluate(bind('userName sw "ss"', RS), {"userName": "ßa"})
    assert evaluate(bind('displayName eq "i̇stanbul"', RS), {"displayName": "İstanbul"})
    assert evaluate(bind('displayName eq "ΣΊΣΥΦΟΣ"', RS), {"displayName": "σίσυφος"})


def test_wrong_json_types_never_match():
    assert not evaluate(bind('userName eq "5"', RS), {"userName": 5})
    assert evaluate(bind('userName ne "5"', RS), {"userName": 5})
    assert not evaluate(bind("active eq true", RS), {"active": "true"})
    assert not evaluate(bind(f"{TX}:level eq 1", RS), {TX: {"level": True}})
    assert not evaluate(bind('meta.created gt "2000-01-01T00:00:00Z"', RS), {"meta": {"created": "soon"}})
    assert not evaluate(bind('emails.value eq "x"', RS), {"emails": {"value": "x"}})  # not an array
    assert not evaluate(bind('name.givenName eq "x"', RS), {"name": "x"})


def test_values_of():
    bp = bind('emails[type eq "work"].value eq "x"', RS).path
    assert values_of(bp, BJENSEN) == ["bjensen@example.com"]
    assert values_of(bind('emails eq "x"', RS).path, BJENSEN) == ["bjensen@example.com", "babs@jensen.org"]


def test_parse_datetime():
    assert parse_datetime("2020-01-01T00:00:00Z") == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert parse_datetime("2020-01-01T00:00:00.5-02:30") == datetime(
        2020, 1, 1, 0, 0, 0, 500000, tzinfo=timezone(-timedelta(hours=2, minutes=30)))
    for bad in ("2020-01-01", "2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "2020-01-01T24:00:00Z",
                "2020-01-01 00:00:00Z", "2020-01-01T00:00:00.1234567Z", "x", None, 5):
        assert parse_datetime(bad) is None


def test_sort_value():
    rs = RS
    assert sort_value(rs.resolve("userName"), {"userName": "ABC"}) == "abc"
    assert sort_value(rs.resolve("externalId"), {"externalId": "ABC"}) == "ABC"
    assert sort_value(rs.resolve("emails"), BJENSEN) == "bjensen@example.com"  # primary
    assert sort_value(rs.resolve("emails.type"), {"emails": [{"type": "B"}, {"type": "a"}]}) == "b"  # first
    assert sort_value(rs.resolve("emails"), {"emails": [{"type": "x"}, {"value": "Z", "primary": True}]}) == "z"
    assert sort_value(rs.resolve("title"), {}) is None
    with pytest.raises(FilterError):
        sort_value(rs.resolve("name"), {})


# ------------------------------------------------------------------------------------------
# SQL: shapes


def test_sql_hot_paths_are_index_shaped():
    params: list = []
    assert compile_filter(bind('userName eq "Bob"', RS), params) == "(doc_ci->>'userName') = $1"
    assert params == ["bob"]
    params = ["tenant", "User"]
    assert compile_filter(bind("externalId eq AbC", RS), params) == "(doc->>'externalId') = $3"
    assert params[2] == "AbC"
    params = []
    groups = default_group_schema()
    assert compile_filter(bind('displayName eq "Sales"', groups), params, "r.doc", "r.doc_ci") == (
        "(r.doc_ci->>'displayName') = $1")
    params = []
    assert compile_filter(bind('userName sw "a_b%"', RS), params) == "(doc_ci->>'userName') LIKE $1"
    assert params == ["a\\_b\\%%"]
    params = []
    sql = compile_filter(bind('emails[type eq "work"].value eq "X@Y"', RS), params)
    assert sql.startswith("doc_ci @> jsonb_build_object('emails'")
    assert params == ["work", "x@y"]
    params = []
    assert "@>" in compile_filter(bind('members[value eq "u1"]', groups), params)


def test_sql_never_pastes_values():
    evil = "x' OR 1=1 --"
    for text in (f'userName eq "{evil}"', f'emails co "{evil}"', f'emails[type eq "{evil}"]',
                 f'meta.version gt "{evil}"'):
        params: list = []
        sql = compile_filter(bind(text, RS), params)
        assert "OR 1=1" not in sql and params


def test_like_escape():
    assert like_escape("50%_a\\b") == "50\\%\\_a\\\\b"


# ------------------------------------------------------------------------------------------
# SQL: against PostgreSQL


@pytest.fixture(scope="module")
async def conn(pg_pool):
    async with pg_pool.acquire() as c:
        await c.execute(
            "CREATE TEMP TABLE IF NOT EXISTS scim_filter_t "
            "(tenant_id text, type text, id text, doc jsonb, doc_ci jsonb)"
        )
        yield c
        await c.execute("DROP TABLE IF EXISTS scim_filter_t")


async def _load(conn, resources):
    rows = [{"id": r["id"], "doc": r, "doc_ci": casefold_doc(r, RS)} for r in resources]
    await conn.execute("TRUNCATE scim_filter_t")
    await conn.execute(
        "INSERT INTO scim_filter_t (tenant_id, type, id, doc, doc_ci) "
        "SELECT 't', 'User', x->>'id', x->'doc', x->'doc_ci' FROM jsonb_array_elements($1::text::jsonb) AS x",
        json.dumps(rows),
    )


async def _sql_ids(conn, bound):
    params: list = ["t", "User"]
    where = compile_filter(bound, params)
    rows = await conn.fetch(
        f"SELECT id FROM scim_filter_t WHERE tenant_id = $1 AND type = $2 AND ({where})", *params
    )
    return {r["id"] for r in rows}


FIXED = [
    BJENSEN,
    {"id": "u1", "userName": "Straße", "title": "", "emails": [], "active": False,
     "meta": {"created": "2024-03-01T10:00:00.123456+02:00"}},
    {"id": "u2", "userName": "ss", "displayName": "İstanbul", "emails": [{"value": "A%B_C\\D@x.com", "type": "Work"}],
     TX: {"level": -7, "score": 1e16, "tags": [], "badge": "QUJD"}},
    {"id": "u3", "userName": "a'b", "name": {"givenName": None}, "emails": [{"type": "work"}, None, "odd"],
     ENT: {"manager": {"value": "M1"}}, TX: {"score": 0.1, "tags": ["x", None]}},
    {"id": "u4", "userName": "zz", "emails": {"value": "not-an-array@x.com"}, "name": "flat",
     "meta": {"created": "2024-03-01T08:00:00.123456"}},
]


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "STRASSE"', 'userName eq "ss"', 'userName co "a\'b"', 'userName gt "s"', 'userName le "ss"',
        "title pr", 'title eq ""', 'title ne "x"', "not (title pr)",
        'emails co "%b_c\\\\d"', 'emails co "%"', 'emails.value sw "a%"', 'emails ew "X.COM"',
        'emails[type eq "work"]', 'emails[type eq "work"].value pr', 'emails[type eq "work"].value ne "x"',
        'emails.value ne "bjensen@example.com"', "emails pr", "not (emails pr)", 'emails.value eq null',
        'emails.value eq "not-an-array@x.com"', 'emails[not (type eq "work")]',
        "active eq false", "active ne false", 'displayName eq "i̇stanbul"', 'displayName sw "İ"',
        'name.givenName pr', 'name pr', 'name.givenName ne "x"', f'{ENT}:manager eq "m1"',
        f'{ENT}:manager.value pr', f'{ENT}:department pr',
        'meta.created gt "2024-03-01T08:00:00.123456Z"', 'meta.created eq "2024-03-01T08:00:00.123456Z"',
        'meta.created ge "2024-03-01T08:00:00.123456Z"', 'meta.created sw "2024"',
        f"{TX}:level lt 0", f"{TX}:score gt 1000", f"{TX}:score eq 0.1", f"{TX}:score ne 0.1",
        f'{TX}:tags eq "x"', f"{TX}:tags pr", f'{TX}:tags ne "x"', f'{TX}:badge eq "QUJD"',
        f'{TX}:badge eq "qujd"', f'{TX}:badge sw "QU"',
        'userName eq "x" or (active eq true and not (emails[type eq "home"]))',
        'name[givenName eq "x" or familyName pr]', 'name[not (givenName pr)]', 'name[givenName eq null]',
        f'{ENT}:manager[value eq "m1"]', f'{ENT}:manager[value eq "m1"].displayName ne "x"',
        'emails[value eq "a%b_c\\\\d@x.com" and type eq "WORK"]', 'emails[value eq "x" and value eq "y"]',
        'emails[type eq "work"].value eq "x"', 'emails[type eq "work"].type eq "work"',
    ],
)
async def test_sql_matches_evaluator_on_fixed_resources(conn, text):
    await _load(conn, FIXED)
    bound = bind(text, RS)
    expected = {r["id"] for r in FIXED if evaluate(bound, r)}
    assert await _sql_ids(conn, bound) == expected


async def test_sql_expected_results(conn):
    await _load(conn, FIXED)
    assert await _sql_ids(conn, bind('userName eq "STRASSE"', RS)) == {"u1"}
    assert await _sql_ids(conn, bind('userName eq "SS"', RS)) == {"u2"}
    assert await _sql_ids(conn, bind('emails co "%b_c\\\\d"', RS)) == {"u2"}
    assert await _sql_ids(conn, bind('userName co "a\'b"', RS)) == {"u3"}
    assert await _sql_ids(conn, bind('emails[value eq "a%b_c\\\\d@x.com" and type eq "WORK"]', RS)) == {"u2"}
    assert await _sql_ids(conn, bind('emails[type eq "work"].value eq "BJENSEN@example.com"', RS)) == {BJENSEN["id"]}
    assert await _sql_ids(conn, bind('meta.created eq "2024-03-01T08:00:00.123456Z"', RS)) == {"u1", "u4"}


async def test_sql_uses_expression_index(conn):
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS scim_idx_t (tenant_id text, type text, id text, "
                       "doc jsonb, doc_ci jsonb)")
    await conn.execute("CREATE INDEX IF NOT EXISTS scim_idx_t_un ON scim_idx_t (tenant_id, type, (doc_ci->>'userName'))")
    await conn.execute("CREATE INDEX IF NOT EXISTS scim_idx_t_ext ON scim_idx_t (tenant_id, type, (doc->>'externalId'))")
    await conn.execute(
        "INSERT INTO scim_idx_t SELECT 't', 'User', g::text, jsonb_build_object('userName', 'U' || g, "
        "'externalId', 'E' || g), jsonb_build_object('userName', 'u' || g, 'externalId', 'E' || g) "
        "FROM generate_series(1, 5000) g"
    )
    await conn.execute("ANALYZE scim_idx_t")
    try:
        for text, index in (('userName eq "U42"', "scim_idx_t_un"), ("externalId eq E42", "scim_idx_t_ext")):
            params: list = ["t", "User"]
            where = compile_filter(bind(text, RS), params)
            sql = f"SELECT id FROM scim_idx_t WHERE tenant_id = $1 AND type = $2 AND {where}"
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *params))
            assert index in plan, plan
            assert [r["id"] for r in await conn.fetch(sql, *params)] == ["42"]
    finally:
        await conn.execute("DROP TABLE scim_idx_t")


async def test_sql_sort(conn):
    await _load(conn, FIXED)
    for path in ("userName", "emails", "emails.type", "meta.created", "active", f"{TX}:score", f"{TX}:tags",
                 f"{ENT}:manager"):
        for desc in (False, True):
            await _check_sort(conn, path, desc, FIXED)


async def _check_sort(conn, path, desc, resources):
    r = RS.resolve(path)
    order = compile_sort(r, desc)
    rows = await conn.fetch(f'SELECT id FROM scim_filter_t ORDER BY {order}, id COLLATE "C"')
    keyed = sorted(resources, key=lambda x: x["id"])
    present = [x for x in keyed if sort_value(r, x) is not None]
    missing = [x for x in keyed if sort_value(r, x) is None]
    present.sort(key=lambda x: sort_value(r, x), reverse=desc)
    assert [x["id"] for x in rows] == [x["id"] for x in present + missing], (path, desc, order)


def test_compile_sort_errors():
    with pytest.raises(FilterError):
        compile_sort(RS.resolve("name"))
    with pytest.raises(FilterError):
        compile_sort(RS.resolve("addresses"))
    assert compile_sort(RS.resolve("userName")) == '(doc_ci->>\'userName\') COLLATE "C" ASC NULLS LAST'
    assert compile_sort(RS.resolve("externalId"), True) == '(doc->>\'externalId\') COLLATE "C" DESC NULLS LAST'


# ------------------------------------------------------------------------------------------
# Property: the evaluator and the SQL agree

PIECES = ["a", "A", "b", "ß", "SS", "ss", "İ", "i", "ı", "é", "É", "ﬃ", "@", "%", "_", "\\", "'", '"', " ", "x.com"]
text_values = st.lists(st.sampled_from(PIECES), max_size=3).map("".join)
maybe = st.none()

INSTANTS = [datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(hours=h, microseconds=us)
            for h in (0, 1, 2, 48) for us in (0, 500)]
OFFSETS = [timedelta(0), timedelta(hours=1), timedelta(hours=-5, minutes=-30)]


@st.composite
def datetime_texts(draw):
    dt = draw(st.sampled_from(INSTANTS)).astimezone(timezone(draw(st.sampled_from(OFFSETS))))
    s = dt.isoformat()
    if draw(st.booleans()) and dt.utcoffset() == timedelta(0):
        s = s.replace("+00:00", draw(st.sampled_from(["Z", ""])))
    return s


numbers = st.sampled_from([0, 1, -2, 3, 10, 1.5, -2.25, 0.1, 1e16, 2.5])


def optional(d, key, strategy, draw, null_ok=True):
    choice = draw(st.integers(0, 3 if null_ok else 2))
    if choice == 0:
        return  # absent
    if choice == 1 and null_ok:
        d[key] = None
        return
    d[key] = draw(strategy)


@st.composite
def resources(draw, i):
    r: dict = {"id": f"r{i}"}
    optional(r, "userName", text_values, draw)
    optional(r, "displayName", text_values, draw)
    optional(r, "title", text_values, draw)
    optional(r, "externalId", text_values, draw)
    optional(r, "active", st.booleans(), draw)
    if draw(st.booleans()):
        name: dict = {}
        optional(name, "givenName", text_values, draw)
        optional(name, "familyName", text_values, draw)
        r["name"] = name
    if draw(st.booleans()):
        emails = []
        for _ in range(draw(st.integers(0, 3))):
            e: dict = {}
            optional(e, "value", text_values, draw)
            optional(e, "type", st.sampled_from(["work", "Work", "home", "other", "ß"]), draw)
            optional(e, "primary", st.booleans(), draw)
            emails.append(e)
        r["emails"] = emails
    if draw(st.booleans()):
        meta: dict = {}
        optional(meta, "created", datetime_texts(), draw)
        r["meta"] = meta
    if draw(st.booleans()):
        ent: dict = {}
        optional(ent, "department", text_values, draw)
        r[ENT] = ent
    if draw(st.booleans()):
        tx: dict = {}
        optional(tx, "level", st.integers(-3, 3), draw)
        optional(tx, "score", numbers, draw)
        optional(tx, "tags", st.lists(text_values, max_size=3), draw)
        optional(tx, "nick", text_values, draw)
        r[TX] = tx
    return r


STRING_PATHS = [a("userName"), a("displayName"), a("title"), a("externalId"), a("name", "givenName"),
                a("emails", "value"), a("emails", "type"), a("emails"), a("department", uri=ENT),
                a("tags", uri=TX), a("nick", uri=TX), a("UserName"), a("username", uri=USER)]
ALL_OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


@st.composite
def string_compare(draw, paths=STRING_PATHS, values=text_values):
    op = draw(st.sampled_from(ALL_OPS))
    value = draw(values | st.none()) if op in ("eq", "ne") else draw(values)
    return Compare(draw(st.sampled_from(paths)), op, value)


def element_filter():
    leaf = st.one_of(
        string_compare([a("value"), a("type"), a("Value")]),
        st.builds(Compare, st.just(a("primary")), st.sampled_from(["eq", "ne"]), st.booleans()),
        st.builds(Present, st.sampled_from([a("value"), a("type"), a("primary")])),
    )
    return st.recursive(leaf, lambda c: st.one_of(
        st.builds(Not, c),
        st.lists(c, min_size=2, max_size=3).map(tuple).map(And),
        st.lists(c, min_size=2, max_size=3).map(tuple).map(Or),
    ), max_leaves=3)


leaf_filters = st.one_of(
    string_compare(),
    st.builds(Compare, st.sampled_from([a("active"), a("emails", "primary")]), st.sampled_from(["eq", "ne"]),
              st.booleans() | st.none()),
    st.builds(Compare, st.just(a("meta", "created")), st.sampled_from(ALL_OPS), datetime_texts()),
    st.builds(Compare, st.just(a("meta", "created")), st.sampled_from(["sw", "co", "ew"]),
              st.sampled_from(["2020", "T01", "Z", "+01:00", ".0005"])),
    st.builds(Compare, st.sampled_from([a("level", uri=TX), a("score", uri=TX)]),
              st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
              st.sampled_from([0, 1, -2, 3, Decimal("1.5"), Decimal("0.1"), Decimal("1E+16"), Decimal("-2.25")])),
    st.builds(Present, st.sampled_from([
        a("userName"), a("title"), a("name"), a("name", "givenName"), a("emails"), a("emails", "value"),
        a("active"), a("meta", "created"), a("department", uri=ENT), a("tags", uri=TX), a("meta"),
        a("level", uri=TX)])),
    st.builds(lambda f: ValueFilter(ValuePath(a("emails"), f)), element_filter()),
    st.builds(lambda f, op, v, sub: Compare(ValuePath(a("emails"), f, sub), op, v),
              element_filter(), st.sampled_from(ALL_OPS), text_values, st.sampled_from(["value", "type"])),
    st.builds(lambda f: Present(ValuePath(a("emails"), f, "value")), element_filter()),
)

filters = st.recursive(leaf_filters, lambda c: st.one_of(
    st.builds(Not, c),
    st.lists(c, min_size=2, max_size=3).map(tuple).map(And),
    st.lists(c, min_size=2, max_size=3).map(tuple).map(Or),
), max_leaves=6)


@st.composite
def resource_sets(draw):
    n = draw(st.integers(1, 12))
    return [draw(resources(i)) for i in range(n)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ast=filters, docs=resource_sets())
async def test_property_sql_agrees_with_evaluator(conn, ast, docs):
    text = format_filter(ast)
    assert parse_filter(text) == ast  # the printer and the parser agree
    bound = bind(parse_filter(text), RS)
    expected = {r["id"] for r in docs if evaluate(bound, r)}
    # JSON round trip: the evaluator must give the same answers on what PostgreSQL stores
    assert expected == {r["id"] for r in json.loads(json.dumps(docs)) if evaluate(bound, r)}
    await _load(conn, docs)
    assert await _sql_ids(conn, bound) == expected, text


SORT_PATHS = ["userName", "title", "externalId", "emails", "emails.type", "emails.primary", "meta.created",
              "active", f"{ENT}:department", f"{TX}:level", f"{TX}:score", f"{TX}:tags"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=resource_sets(), path=st.sampled_from(SORT_PATHS), desc=st.booleans())
async def test_property_sql_sort_agrees(conn, docs, path, desc):
    await _load(conn, docs)
    await _check_sort(conn, path, desc, docs)


def test_uuid_like_ids_with_unquoted_values():
    """Entra 'test connection' probes with random ids; the filter must bind and simply not match."""
    probe = f"userName eq {uuid.uuid4()}"
    bound = bind(probe, RS)
    assert not evaluate(bound, BJENSEN)
