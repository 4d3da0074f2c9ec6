"""The SCIM schema registry (RFC 7643).

* `Attribute` / `Schema`: frozen attribute definitions with their RFC 7643 §7 JSON form
  (`to_json`) and a validating parser (`Schema.from_json`) for custom extensions.
* The core User (§4.1, representation of §8.7.1), Group (§4.2) and Enterprise User (§4.3)
  schemas, plus the common attributes `id`, `externalId` and `meta` (§3.1), which belong to every
  resource but are not listed in a schema's `attributes` (as in §8.7.1).
* `ResourceSchema`: a resource type (§6) = core schema + extensions, resolving attribute paths
  case-insensitively (`resolve`) to a `ResolvedAttr` (canonical spelling + JSON location).
* `casefold_doc`: the `doc_ci` form of a resource document (every string value of a
  caseExact=false attribute replaced by `str.casefold()`), used by the SQL filter compiler.

Resource documents are the SCIM JSON form with canonical key spelling: core and common
attributes at the top level, extension attributes under the key equal to the extension URN.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

CORE_SCHEMA_URN_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"

TYPES = frozenset(
    {"string", "boolean", "decimal", "integer", "dateTime", "reference", "complex", "binary"}
)
MUTABILITY = frozenset({"readOnly", "readWrite", "immutable", "writeOnly"})
RETURNED = frozenset({"always", "never", "default", "request"})
UNIQUENESS = frozenset({"none", "server", "global"})
#: types whose values are JSON strings compared as text (caseExact applies)
STRING_TYPES = frozenset({"string", "reference", "binary"})

# RFC 7643 §2.1: ATTRNAME = ALPHA *(nameChar); nameChar = "-" / "_" / DIGIT / ALPHA.
# "$ref" is the one reserved sub-attribute name outside that grammar.
ATTRNAME_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_-]*|\$ref)$")
# A schema id: a URI (urn:..., http(s)://...). No whitespace, quotes, backslashes or brackets,
# so that it can be used verbatim as a JSON key, in an attribute path and in SQL literals.
SCHEMA_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s\"'\\\[\]()]+$")


@dataclass(frozen=True)
class Attribute:
    """One attribute definition (RFC 7643 §2.2, §7). Sub-attributes are looked up with `sub`."""

    name: str
    type: str = "string"
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    description: str = ""
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple["Attribute", ...] = ()

    def sub(self, name: str) -> "Attribute | None":
        """The sub-attribute called `name` (case-insensitive), or None."""
        low = name.lower()
        for s in self.sub_attributes:
            if s.name.lower() == low:
                return s
        return None

    @property
    def is_complex(self) -> bool:
        return self.type == "complex"

    @property
    def is_string(self) -> bool:
        """Compared as text (string, reference, binary)."""
        return self.type in STRING_TYPES

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
        }
        if self.canonical_values:
            d["canonicalValues"] = list(self.canonical_values)
        d["caseExact"] = self.case_exact
        if self.type == "reference" or self.reference_types:
            d["referenceTypes"] = list(self.reference_types)
        d["mutability"] = self.mutability
        d["returned"] = self.returned
        d["uniqueness"] = self.uniqueness
        if self.type == "complex":
            d["subAttributes"] = [s.to_json() for s in self.sub_attributes]
        return d

    @classmethod
    def from_json(cls, data: Any, *, where: str = "attribute", is_sub: bool = False) -> "Attribute":
        """Parse and validate one RFC 7643 §7 attribute definition (defaults per §2.2)."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: an attribute definition must be a JSON object")
        name = data.get("name")
        if not isinstance(name, str) or not ATTRNAME_RE.match(name):
            raise ValueError(f"{where}: invalid attribute name {name!r} (RFC 7643 §2.1 ATTRNAME)")
        where = f"{where} {name!r}"
        typ = data.get("type", "string")
        if typ not in TYPES:
            raise ValueError(f"{where}: unknown type {typ!r}; expected one of {sorted(TYPES)}")

        def flag(key: str, default: bool) -> bool:
            v = data.get(key, default)
            if not isinstance(v, bool):
                raise ValueError(f"{where}: {key} must be a boolean, got {v!r}")
            return v

        def enum(key: str, allowed: frozenset[str], default: str) -> str:
            v = data.get(key, default)
            if v not in allowed:
                raise ValueError(f"{where}: {key} must be one of {sorted(allowed)}, got {v!r}")
            return v

        def strings(key: str) -> tuple[str, ...]:
            v = data.get(key) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{where}: {key} must be an array of strings")
            return tuple(v)

        description = data.get("description", "") or ""
        if not isinstance(description, str):
            raise ValueError(f"{where}: description must be a string")
        subs_json = data.get("subAttributes")
        subs: tuple[Attribute, ...] = ()
        if typ == "complex":
            if is_sub:
                raise ValueError(
                    f"{where}: a sub-attribute cannot be complex (RFC 7643 §2.3.8)"
                )
            if not isinstance(subs_json, list) or not subs_json:
                raise ValueError(f"{where}: a complex attribute needs a non-empty subAttributes array")
            subs = tuple(
                cls.from_json(s, where=f"{where} sub-attribute", is_sub=True) for s in subs_json
            )
            _check_unique_names(subs, where)
        elif subs_json:
            raise ValueError(f"{where}: subAttributes are only allowed on complex attributes")
        return cls(
            name=name,
            type=typ,
            multi_valued=flag("multiValued", False),
            required=flag("required", False),
            case_exact=flag("caseExact", False),
            mutability=enum("mutability", MUTABILITY, "readWrite"),
            returned=enum("returned", RETURNED, "default"),
            uniqueness=enum("uniqueness", UNIQUENESS, "none"),
            description=description,
            canonical_values=strings("canonicalValues"),
            reference_types=strings("referenceTypes"),
            sub_attributes=subs,
        )


def _check_unique_names(attrs: Iterable[Attribute], where: str) -> None:
    seen: set[str] = set()
    for a in attrs:
        low = a.name.lower()
        if low in seen:
            raise ValueError(f"{where}: duplicate attribute name {a.name!r} (names are case-insensitive)")
        seen.add(low)


@dataclass(frozen=True)
class Schema:
    """A schema (RFC 7643 §7): id URN, name, description, attributes."""

    id: str
    name: str
    description: str = ""
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, name: str) -> Attribute | None:
        """The top-level attribute called `name` (case-insensitive), or None."""
        low = name.lower()
        for a in self.attributes:
            if a.name.lower() == low:
                return a
        return None

    def to_json(self, location: str | None = None) -> dict[str, Any]:
        """The `/Schemas/{id}` representation; `location` (a full URL) adds `meta`."""
        d: dict[str, Any] = {
            "schemas": [CORE_SCHEMA_URN_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_json() for a in self.attributes],
        }
        if location is not None:
            d["meta"] = {"resourceType": "Schema", "location": location}
        return d

    @classmethod
    def from_json(cls, data: Any) -> "Schema":
        """Parse and validate an RFC 7643 §7 schema document; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a schema must be a JSON object")
        sid = data.get("id")
        if not isinstance(sid, str) or not SCHEMA_ID_RE.match(sid):
            raise ValueError(f"schema id must be a URI such as 'urn:...', got {sid!r}")
        name = data.get("name", "")
        if name is None:
            name = ""
        if not isinstance(name, str):
            raise ValueError(f"schema {sid}: name must be a string")
        description = data.get("description", "") or ""
        if not isinstance(description, str):
            raise ValueError(f"schema {sid}: description must be a string")
        attrs_json = data.get("attributes")
        if not isinstance(attrs_json, list):
            raise ValueError(f"schema {sid}: attributes must be an array")
        attrs = tuple(Attribute.from_json(a, where=f"schema {sid}: attribute") for a in attrs_json)
        _check_unique_names(attrs, f"schema {sid}")
        return cls(id=sid, name=name, description=description, attributes=attrs)


# --------------------------------------------------------------------------------------------
# Definitions. Written out from RFC 7643 §3.1, §4 and §8.7.1.


def _a(name: str, description: str = "", **kw: Any) -> Attribute:
    if "sub_attributes" in kw:
        kw["sub_attributes"] = tuple(kw["sub_attributes"])
        kw.setdefault("type", "complex")
    for k in ("canonical_values", "reference_types"):
        if k in kw:
            kw[k] = tuple(kw[k])
    return Attribute(name=name, description=description, **kw)


def _multi(
    description: str,
    *,
    value_type: str = "string",
    value_description: str = "",
    type_canonical: Iterable[str] = (),
    value_reference_types: Iterable[str] = (),
    what: str = "",
) -> tuple[Attribute, ...]:
    """The usual value/display/type/primary sub-attributes of a multi-valued attribute (§2.4)."""
    value_kw: dict[str, Any] = {}
    if value_reference_types:
        value_kw["reference_types"] = tuple(value_reference_types)
    return (
        _a("value", value_description or description, type=value_type, **value_kw),
        _a("display", "A human-readable name, primarily used for display purposes.  READ-ONLY."),
        _a(
            "type",
            "A label indicating the attribute's function" + (f", e.g., {what}." if what else "."),
            canonical_values=tuple(type_canonical),
        ),
        _a(
            "primary",
            "A Boolean value indicating the 'primary' or preferred attribute value for this "
            "attribute.  The primary attribute value 'true' MUST appear no more than once.",
            type="boolean",
        ),
    )


#: RFC 7643 §3.1 common attributes: part of every resource, not listed in the schemas.
COMMON_ATTRIBUTES: tuple[Attribute, ...] = (
    _a(
        "id",
        "A unique identifier for a SCIM resource as defined by the service provider.",
        case_exact=True,
        mutability="readOnly",
        returned="always",
        uniqueness="server",
    ),
    _a(
        "externalId",
        "A String that is an identifier for the resource as defined by the provisioning client.",
        case_exact=True,
    ),
    _a(
        "meta",
        "A complex attribute containing resource metadata.",
        mutability="readOnly",
        sub_attributes=[
            _a("resourceType", "The name of the resource type of the resource.",
               case_exact=True, mutability="readOnly"),
            _a("created", "The DateTime that the resource was added to the service provider.",
               type="dateTime", mutability="readOnly"),
            _a("lastModified", "The most recent DateTime that the details of this resource were "
               "updated at the service provider.", type="dateTime", mutability="readOnly"),
            _a("location", "The URI of the resource being returned.", type="reference",
               reference_types=["uri"], case_exact=True, mutability="readOnly"),
            _a("version", "The version of the resource being returned.", case_exact=True,
               mutability="readOnly"),
        ],
    ),
)

_USER_ATTRIBUTES: tuple[Attribute, ...] = (
    _a(
        "userName",
        "Unique identifier for the User, typically used by the user to directly authenticate to "
        "the service provider.  Each User MUST include a non-empty userName value.  This "
        "identifier MUST be unique across the service provider's entire set of Users.  REQUIRED.",
        required=True,
        uniqueness="server",
    ),
    _a(
        "name",
        "The components of the user's real name.",
        sub_attributes=[
            _a("formatted", "The full name, including all middle names, titles, and suffixes as "
               "appropriate, formatted for display (e.g., 'Ms. Barbara J Jensen, III')."),
            _a("familyName", "The family name of the User, or last name in most Western languages."),
            _a("givenName", "The given name of the User, or first name in most Western languages."),
            _a("middleName", "The middle name(s) of the User."),
            _a("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western "
               "languages (e.g., 'Ms.')."),
            _a("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western "
               "languages (e.g., 'III')."),
        ],
    ),
    _a("displayName", "The name of the User, suitable for display to end-users."),
    _a("nickName", "The casual way to address the user in real life."),
    _a("profileUrl", "A fully qualified URL pointing to a page representing the User's online "
       "profile.", type="reference", reference_types=["external"]),
    _a("title", "The user's title, such as \"Vice President.\""),
    _a("userType", "Used to identify the relationship between the organization and the user."),
    _a("preferredLanguage", "Indicates the User's preferred written or spoken language."),
    _a("locale", "Used to indicate the User's default location for purposes of localizing items."),
    _a("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., "
       "'America/Los_Angeles'."),
    _a("active", "A Boolean value indicating the User's administrative status.", type="boolean"),
    _a(
        "password",
        "The User's cleartext password.  This attribute is intended to be used as a means to "
        "specify an initial password when creating a new User or to reset an existing User's "
        "password.",
        mutability="writeOnly",
        returned="never",
    ),
    _a(
        "emails",
        "Email addresses for the user.  Canonical type values of 'work', 'home', and 'other'.",
        multi_valued=True,
        sub_attributes=_multi(
            "Email addresses for the user.",
            type_canonical=["work", "home", "other"],
            what="'work' or 'home'",
        ),
    ),
    _a(
        "phoneNumbers",
        "Phone numbers for the User.  Canonical type values of 'work', 'home', 'mobile', 'fax', "
        "'pager', and 'other'.",
        multi_valued=True,
        sub_attributes=_multi(
            "Phone number of the User.",
            type_canonical=["work", "home", "mobile", "fax", "pager", "other"],
            what="'work', 'home', 'mobile'",
        ),
    ),
    _a(
        "ims",
        "Instant messaging addresses for the User.",
        multi_valued=True,
        sub_attributes=_multi(
            "Instant messaging address for the User.",
            type_canonical=["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
            what="'aim', 'gtalk', 'xmpp'",
        ),
    ),
    _a(
        "photos",
        "URLs of photos of the User.",
        multi_valued=True,
        sub_attributes=_multi(
            "URL of a photo of the User.",
            value_type="reference",
            value_reference_types=["external"],
            type_canonical=["photo", "thumbnail"],
            what="'photo' or 'thumbnail'",
        ),
    ),
    _a(
        "addresses",
        "A physical mailing address for this User.  Canonical type values of 'work', 'home', and "
        "'other'.",
        multi_valued=True,
        sub_attributes=[
            _a("formatted", "The full mailing address, formatted for display or use with a mailing "
               "label.  This attribute MAY contain newlines."),
            _a("streetAddress", "The full street address component, which may include house "
               "number, street name, P.O. box, and multi-line extended street address information."),
            _a("locality", "The city or locality component."),
            _a("region", "The state or region component."),
            _a("postalCode", "The zip code or postal code component."),
            _a("country", "The country name component."),
            _a("type", "A label indicating the attribute's function, e.g., 'work' or 'home'.",
               canonical_values=["work", "home", "other"]),
            # Not in the §8.7.1 listing, but §4.1.2 and the §8.2 example use it.
            _a("primary", "A Boolean value indicating the 'primary' or preferred address.",
               type="boolean"),
        ],
    ),
    _a(
        "groups",
        "A list of groups to which the user belongs, either through direct membership, through "
        "nested groups, or dynamically calculated.",
        multi_valued=True,
        mutability="readOnly",
        sub_attributes=[
            _a("value", "The identifier of the User's group.", mutability="readOnly"),
            _a("$ref", "The URI of the corresponding 'Group' resource to which the user belongs.",
               type="reference", reference_types=["User", "Group"], mutability="readOnly"),
            _a("display", "A human-readable name, primarily used for display purposes.  READ-ONLY.",
               mutability="readOnly"),
            _a("type", "A label indicating the attribute's function, e.g., 'direct' or 'indirect'.",
               canonical_values=["direct", "indirect"], mutability="readOnly"),
        ],
    ),
    _a(
        "entitlements",
        "A list of entitlements for the User that represent a thing the User has.",
        multi_valued=True,
        sub_attributes=_multi("The value of an entitlement."),
    ),
    _a(
        "roles",
        "A list of roles for the User that collectively represent who the User is, e.g., "
        "'Student', 'Faculty'.",
        multi_valued=True,
        sub_attributes=_multi("The value of a role."),
    ),
    _a(
        "x509Certificates",
        "A list of certificates issued to the User.",
        multi_valued=True,
        sub_attributes=_multi("The value of an X.509 certificate.", value_type="binary"),
    ),
)

USER_SCHEMA = Schema(id=USER_URN, name="User", description="User Account",
                     attributes=_USER_ATTRIBUTES)

GROUP_SCHEMA = Schema(
    id=GROUP_URN,
    name="Group",
    description="Group",
    attributes=(
        # §4.2 says REQUIRED (the §8.7.1 listing says required false).
        _a("displayName", "A human-readable name for the Group.  REQUIRED.", required=True),
        _a(
            "members",
            "A list of members of the Group.",
            multi_valued=True,
            sub_attributes=[
                _a("value", "Identifier of the member of this Group.", mutability="immutable"),
                _a("$ref", "The URI corresponding to a SCIM resource that is a member of this "
                   "Group.", type="reference", reference_types=["User", "Group"],
                   mutability="immutable"),
                _a("type", "A label indicating the type of resource, e.g., 'User' or 'Group'.",
                   canonical_values=["User", "Group"], mutability="immutable"),
                # Not in §8.7.1 (§4.2 examples show it). readOnly: the server derives it from
                # the member's displayName at read time; a client-sent display is ignored.
                _a("display", "A human-readable name, primarily used for display purposes.  "
                   "READ-ONLY.", mutability="readOnly"),
            ],
        ),
    ),
)

ENTERPRISE_USER_SCHEMA = Schema(
    id=ENTERPRISE_USER_URN,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        _a("employeeNumber", "Numeric or alphanumeric identifier assigned to a person, typically "
           "based on order of hire or association with an organization."),
        _a("costCenter", "Identifies the name of a cost center."),
        _a("organization", "Identifies the name of an organization."),
        _a("division", "Identifies the name of a division."),
        _a("department", "Identifies the name of a department."),
        _a(
            "manager",
            "The User's manager.  A complex type that optionally allows service providers to "
            "represent organizational hierarchy by referencing the 'id' attribute of another User.",
            sub_attributes=[
                _a("value", "The id of the SCIM resource representing the User's manager."),
                _a("$ref", "The URI of the SCIM resource representing the User's manager.",
                   type="reference", reference_types=["User"]),
                _a("displayName", "The displayName of the User's manager.  OPTIONAL and READ-ONLY.",
                   mutability="readOnly"),
            ],
        ),
    ),
)


# --------------------------------------------------------------------------------------------
# Resource types and path resolution


@dataclass(frozen=True)
class ResolvedAttr:
    """An attribute path resolved against a resource type.

    `location` is the key path in a resource document: core/common attributes at the top level,
    extension attributes under the extension URN key; when `attribute` is multi-valued the
    sub-attribute key applies to each element of the array.
    """

    schema: str                       # URN of the schema defining the attribute
    attribute: Attribute
    sub_attribute: Attribute | None = None
    extension: bool = False           # True: lives under doc[schema]
    common: bool = False              # id / externalId / meta

    @property
    def container(self) -> tuple[str, ...]:
        return (self.schema,) if self.extension else ()

    @property
    def location(self) -> tuple[str, ...]:
        loc = self.container + (self.attribute.name,)
        if self.sub_attribute is not None:
            loc += (self.sub_attribute.name,)
        return loc

    @property
    def target(self) -> Attribute:
        """The attribute whose values are addressed (the sub-attribute if there is one)."""
        return self.sub_attribute or self.attribute

    @property
    def multi_valued(self) -> bool:
        """True if the path crosses an array."""
        return self.attribute.multi_valued or bool(
            self.sub_attribute is not None and self.sub_attribute.multi_valued
        )

    @property
    def attr_path(self) -> str:
        """`attr` or `attr.sub`, canonical spelling, without URN."""
        if self.sub_attribute is None:
            return self.attribute.name
        return f"{self.attribute.name}.{self.sub_attribute.name}"

    @property
    def canonical(self) -> str:
        """Canonical path: extension attributes URN-prefixed, core ones bare."""
        return f"{self.schema}:{self.attr_path}" if self.extension else self.attr_path

    @property
    def full(self) -> str:
        """Always URN-prefixed."""
        return f"{self.schema}:{self.attr_path}"


def split_attr_path(path: str) -> tuple[str | None, str, str | None]:
    """`[URI ":"] ATTRNAME ["." subAttr]` -> (uri or None, attr, sub or None), syntax only.

    Raises ValueError if the path is malformed. The URI is everything up to the last ':' (an
    attribute name never contains ':', while URNs contain dots, e.g. '2.0').
    """
    uri: str | None = None
    rest = path
    if ":" in path:
        uri, _, rest = path.rpartition(":")
        if not uri:
            raise ValueError(f"invalid attribute path {path!r}")
    attr, dot, sub = rest.partition(".")
    if not ATTRNAME_RE.match(attr) or (dot and not ATTRNAME_RE.match(sub)):
        raise ValueError(f"invalid attribute path {path!r}")
    return uri, attr, (sub if dot else None)


@dataclass(frozen=True)
class ResourceSchema:
    """A resource type (RFC 7643 §6): core schema + extensions (schema, required)."""

    name: str
    endpoint: str
    schema: Schema
    extensions: tuple[tuple[Schema, bool], ...] = ()
    description: str = ""
    common_attributes: tuple[Attribute, ...] = field(default=COMMON_ATTRIBUTES, repr=False)

    # -- schemas
    @property
    def schema_urns(self) -> list[str]:
        return [self.schema.id] + [s.id for s, _ in self.extensions]

    def extension(self, urn: str) -> Schema | None:
        low = urn.lower()
        for s, _ in self.extensions:
            if s.id.lower() == low:
                return s
        return None

    def schema_for_urn(self, urn: str) -> Schema | None:
        """The core or extension schema with this id (case-insensitive), or None."""
        if urn.lower() == self.schema.id.lower():
            return self.schema
        return self.extension(urn)

    def with_extension(self, schema: Schema, required: bool = False) -> "ResourceSchema":
        """A new ResourceSchema with one more extension schema."""
        if self.schema_for_urn(schema.id) is not None:
            raise ValueError(f"schema {schema.id} is already part of resource type {self.name}")
        return replace(self, extensions=self.extensions + ((schema, required),))

    def to_json(self, location: str | None = None) -> dict[str, Any]:
        """The `/ResourceTypes/{name}` representation (RFC 7643 §6)."""
        d: dict[str, Any] = {
            "schemas": [RESOURCE_TYPE_URN],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [{"schema": s.id, "required": r} for s, r in self.extensions],
        }
        if location is not None:
            d["meta"] = {"resourceType": "ResourceType", "location": location}
        return d

    # -- resolution
    def common_attribute(self, name: str) -> Attribute | None:
        low = name.lower()
        for a in self.common_attributes:
            if a.name.lower() == low:
                return a
        return None

    def resolve_parts(self, uri: str | None, attr: str, sub: str | None = None) -> ResolvedAttr | None:
        """Resolve (uri, attr, sub) case-insensitively; None if unknown."""
        if uri is None or uri.lower() == self.schema.id.lower():
            a = self.common_attribute(attr)
            common = a is not None
            if a is None:
                a = self.schema.attribute(attr)
            schema, ext = self.schema.id, False
        else:
            s = self.extension(uri)
            if s is None:
                return None
            a, schema, ext, common = s.attribute(attr), s.id, True, False
        if a is None:
            return None
        sa = None
        if sub is not None:
            if not a.is_complex:
                return None
            sa = a.sub(sub)
            if sa is None:
                return None
        return ResolvedAttr(schema=schema, attribute=a, sub_attribute=sa, extension=ext, common=common)

    def resolve(self, path: str) -> ResolvedAttr | None:
        """Resolve `userName`, `name.givenName`, `emails.value`, `urn:...:User:userName`,
        `urn:...:enterprise:2.0:User:manager.value` (case-insensitive); None if unknown or
        malformed."""
        low = path.lower()
        # Prefer a known schema URN as prefix (URNs may contain dots, e.g. "2.0").
        for urn in sorted(self.schema_urns, key=len, reverse=True):
            if low.startswith(urn.lower() + ":"):
                rest = path[len(urn) + 1:]
                attr, dot, sub = rest.partition(".")
                if not ATTRNAME_RE.match(attr) or (dot and not ATTRNAME_RE.match(sub)):
                    return None
                return self.resolve_parts(urn, attr, sub if dot else None)
        try:
            uri, attr, sub = split_attr_path(path)
        except ValueError:
            return None
        return self.resolve_parts(uri, attr, sub)

    def all_attributes(self) -> Iterable[tuple[str, bool, Attribute]]:
        """(schema URN, is_extension, attribute) for common, core and extension attributes."""
        for a in self.common_attributes:
            yield self.schema.id, False, a
        for a in self.schema.attributes:
            yield self.schema.id, False, a
        for s, _ in self.extensions:
            for a in s.attributes:
                yield s.id, True, a


def default_user_schema() -> ResourceSchema:
    """User resource type: core User + Enterprise User extension (optional)."""
    return ResourceSchema(
        name="User",
        endpoint="/Users",
        schema=USER_SCHEMA,
        extensions=((ENTERPRISE_USER_SCHEMA, False),),
        description="User Account",
    )


def default_group_schema() -> ResourceSchema:
    return ResourceSchema(name="Group", endpoint="/Groups", schema=GROUP_SCHEMA, description="Group")


# --------------------------------------------------------------------------------------------
# doc_ci


def _fold_value(attr: Attribute, value: Any) -> Any:
    if attr.is_complex:
        def fold_obj(obj: Any) -> Any:
            if not isinstance(obj, dict):
                return obj
            out = {}
            for k, v in obj.items():
                sa = attr.sub(k)
                out[k] = _fold_value(sa, v) if sa is not None else v
            return out

        if isinstance(value, list):
            return [fold_obj(v) for v in value]
        return fold_obj(value)
    if attr.is_string and not attr.case_exact:
        if isinstance(value, str):
            return value.casefold()
        if isinstance(value, list):
            return [v.casefold() if isinstance(v, str) else v for v in value]
    return value


def casefold_doc(doc: dict[str, Any], resource_schema: ResourceSchema) -> dict[str, Any]:
    """`doc_ci`: `doc` with every string value of a caseExact=false attribute (string, reference,
    binary types; sub-attributes included) replaced by its `str.casefold()`. Everything else
    (caseExact strings, booleans, numbers, dateTimes, unknown keys) is copied unchanged, so
    `doc_ci` can answer any comparison. Keys are looked up case-insensitively."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        ext = resource_schema.extension(k) if ":" in k else None
        if ext is not None and isinstance(v, dict):
            sub_out = {}
            for ek, ev in v.items():
                a = ext.attribute(ek)
                sub_out[ek] = _fold_value(a, ev) if a is not None else ev
            out[k] = sub_out
            continue
        a = resource_schema.common_attribute(k) or resource_schema.schema.attribute(k)
        out[k] = _fold_value(a, v) if a is not None else v
    return out
