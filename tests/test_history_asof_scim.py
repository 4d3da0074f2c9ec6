"""GET /scim/v2/<t>/Users|Groups/<id>?asOf=T[&knownAt=K]: the resource as it was, in SCIM form, for the
auditor and admin scopes, over the real HTTP service, with exact expected answers at instants between
every pair of events of one scenario (created, added to a group, attribute changed, deactivated, a
backdated licence correction, deleted)."""
from __future__ import annotations

from history_scenario import URN, scenario  # noqa: F401 - the fixture
from ledger.erasure import erase

ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


async def as_of(sc, path, i=None, known=None, scope="auditor", **params):
    q = dict(params)
    if i is not None:
        q["asOf"] = sc.marks[i].isoformat()
    if known is not None:
        q["knownAt"] = str(known)
    st, body, headers = await sc.call("GET", path, scope, **q)
    return st, body, headers


def facts(doc: dict) -> tuple:
    return doc["userName"], doc["title"], doc["name"]["givenName"], doc.get("active")


async def test_user_as_of_between_every_pair_of_events(scenario):
    sc, uid, gid = scenario
    path = sc.user_url(uid)
    expected = [None, ("ada", "Engineer", "Ada", True), ("ada", "Engineer", "Ada", True),
                ("ada", "Lead", "Ada", True), ("ada", "Lead", "Ada", False), ("ada", "Lead", "Ada", False), None]
    for i, want in enumerate(expected):
        st, doc, headers = await as_of(sc, path, i)
        if want is None:
            assert st == 404 and doc["schemas"] == [ERROR_URN] and doc["status"] == "404", (i, doc)
            continue
        assert st == 200 and headers["Content-Type"].startswith("application/scim+json"), (i, doc)
        assert facts(doc) == want, i
        assert doc["schemas"] == [URN + "User"] and doc["id"] == uid
        assert doc["meta"]["resourceType"] == "User"
        assert doc["meta"]["location"] == str(sc.srv.make_url(path))
        assert headers["ETag"] == doc["meta"]["version"]
        assert "erased" not in doc and "asOf" not in doc
    # the live resource read at each moment is exactly what the as-of read says of that moment
    assert [("groups" in live) for live in sc.live.values()] == [False, True, True]
    for i, live in sc.live.items():
        st, doc, _ = await as_of(sc, path, i)
        assert doc == live, i
    # its groups then
    group = {"value": gid, "display": "Design", "type": "direct",
             "$ref": str(sc.srv.make_url(f"/scim/v2/{sc.t}/Groups/{gid}"))}
    assert [(await as_of(sc, path, i))[1].get("groups") for i in (1, 2, 3, 4, 5)] == \
        [None, [group], [group], [group], [group]]
    st, doc, _ = await as_of(sc, path, 5, sc.seq_at[1])
    assert "groups" not in doc
    # versions as of then: created (1), title (2), deactivated (3)
    versions = [(await as_of(sc, path, i))[1]["meta"]["version"] for i in (1, 2, 3, 4, 5)]
    assert versions == ['W/"1"', 'W/"1"', 'W/"2"', 'W/"3"', 'W/"3"']
    # 404s say why: not yet created, deleted since
    st, err, _ = await as_of(sc, path, 0)
    assert f"no User {uid} existed at {sc.marks[0].isoformat()}" == err["detail"]
    st, err, _ = await as_of(sc, path, 6)
    assert err["detail"].startswith(f"User {uid} was deleted at ")


async def test_known_at_shows_what_the_ledger_said_then(scenario):
    sc, uid, gid = scenario
    path = sc.user_url(uid)
    # after the deletion, as the ledger knew it at each earlier mark (a sequence or a recorded time)
    expected = [None, ("ada", "Engineer", "Ada", True), ("ada", "Engineer", "Ada", True),
                ("ada", "Lead", "Ada", True), ("ada", "Lead", "Ada", False), ("ada", "Lead", "Ada", False), None]
    for i, want in enumerate(expected):
        for known in (sc.seq_at[i], sc.marks[i].isoformat()):
            st, doc, _ = await as_of(sc, path, 6, known)
            if want is None:
                assert st == 404, (i, known, doc)
                assert doc["detail"].endswith(f"as known at {known}")
            else:
                assert st == 200 and facts(doc) == want, (i, known, doc)
    # knownAt alone: asOf is now
    st, doc, _ = await as_of(sc, path, None, sc.seq_at[3])
    assert st == 200 and facts(doc) == ("ada", "Lead", "Ada", True)
    # an earlier instant as known later: the past does not change with what was learned after it
    st, doc, _ = await as_of(sc, path, 2, sc.seq_at[6])
    assert facts(doc) == ("ada", "Engineer", "Ada", True)


async def test_group_as_of_with_its_members_then(scenario):
    sc, uid, gid = scenario
    path = f"/scim/v2/{sc.t}/Groups/{gid}"
    member = {"value": uid, "type": "User", "$ref": str(sc.srv.make_url(sc.user_url(uid)))}
    for i, members in enumerate([None, None, [member], [member], [member], [member], None]):
        st, doc, _ = await as_of(sc, path, i)
        assert st == 200 and doc["displayName"] == "Design", (i, doc)
        assert doc["schemas"] == [URN + "Group"] and doc["meta"]["resourceType"] == "Group"
        assert doc["meta"]["location"] == str(sc.srv.make_url(path))
        assert doc.get("members") == members, i
    # the member as known before it was added
    st, doc, _ = await as_of(sc, path, 6, sc.seq_at[1])
    assert "members" not in doc
    st, doc, _ = await as_of(sc, path, 6, sc.seq_at[5])
    assert doc["members"] == [member]
    st, doc, _ = await as_of(sc, path, 3, excludedAttributes="members")
    assert "members" not in doc and doc["displayName"] == "Design"


async def test_attributes_and_excluded_attributes_as_on_the_live_endpoint(scenario):
    sc, uid, gid = scenario
    path = sc.user_url(uid)
    st, doc, _ = await as_of(sc, path, 3, attributes="userName,name.givenName")
    assert doc == {"schemas": [URN + "User"], "id": uid, "userName": "ada", "name": {"givenName": "Ada"}}
    st, doc, _ = await as_of(sc, path, 3, excludedAttributes="title,meta")
    assert "title" not in doc and "meta" not in doc and doc["userName"] == "ada"


async def test_scopes(scenario):
    sc, uid, gid = scenario
    path = sc.user_url(uid)
    st, err, headers = await as_of(sc, path, 3, scope="scim")
    assert st == 403 and err["schemas"] == [ERROR_URN] and err["status"] == "403", err
    assert "auditor" in err["detail"] and headers["Content-Type"].startswith("application/scim+json")
    st, err, _ = await as_of(sc, path, None, sc.seq_at[3], scope="scim")
    assert st == 403
    for scope in ("billing", "entitlement"):
        assert (await as_of(sc, path, 3, scope=scope))[0] == 403
    for scope in ("auditor", "admin"):
        assert (await as_of(sc, path, 3, scope=scope))[0] == 200
    # without asOf/knownAt the live endpoint is unchanged: the IdP's scope only
    st, grp, _ = await sc.call("GET", f"/scim/v2/{sc.t}/Groups/{gid}", "scim")
    assert st == 200
    assert (await sc.call("GET", f"/scim/v2/{sc.t}/Groups/{gid}", "auditor"))[0] == 403
    assert (await sc.call("GET", path, "scim"))[0] == 404        # deleted now


async def test_invalid_as_of_or_known_at_is_a_scim_400(scenario):
    sc, uid, gid = scenario
    for params in ({"asOf": "yesterday"}, {"asOf": "2024-05-01T09:00:00"}, {"knownAt": "-3"},
                   {"knownAt": "soon"}, {"asOf": ""}):
        st, err, _ = await sc.call("GET", sc.user_url(uid), "auditor", **params)
        assert st == 400 and err["scimType"] == "invalidValue" and err["schemas"] == [ERROR_URN], (params, err)


async def test_erased_subject_reads_as_erased(scenario, store):
    sc, uid, gid = scenario
    await erase(store, sc.t, uid)
    for i in (1, 3, 4):
        st, doc, _ = await as_of(sc, sc.user_url(uid), i)
        assert st == 200 and doc["erased"] is True, doc
        assert not {"userName", "name", "title"} & set(doc), doc
        assert doc["active"] is (i != 4) and doc["id"] == uid
    st, doc, _ = await as_of(sc, sc.user_url(uid), 3, attributes="userName")
    assert doc == {"schemas": [URN + "User"], "id": uid, "erased": True}
    assert (await as_of(sc, sc.user_url(uid), 6))[0] == 404
