"""The history questions through the real `seatledger` CLI (a process of its own against the test database):
a user's licences at T, usage at T, a user or group as it was at T, the timeline of a user or a pool —
with and without --known-at, on the scenario of history_scenario.py (whose backdated correction ends the
user's holding at marks[3]); each answer is the one the HTTP endpoint gives for the same question."""
from __future__ import annotations

import json

from history_scenario import scenario  # noqa: F401 - the fixture
from test_cli_and_bench import cli_env, run  # noqa: F401 - cli_env is a fixture


def cli(sc, env, *args):
    p = run("-m", "api.cli", *args, "--tenant", sc.t, env=env)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


async def test_licences_and_usage_at_t(scenario, cli_env):
    sc, uid, gid = scenario
    before_correction = sc.seq_at[4]
    for i, known, held in [(1, None, False), (2, None, True), (3, None, False), (3, before_correction, True),
                           (3, sc.marks[4].isoformat(), True), (4, before_correction, False)]:
        args = ["--as-of", sc.marks[i].isoformat()] + (["--known-at", str(known)] if known is not None else [])
        code, out, err = cli(sc, cli_env, "licences", "--user", uid, *args)
        assert code == 0, err
        assert [(x["pool_id"], x["state"], x["grants"]) for x in out["licences"]] == \
            ([("p1", "active", ["design"])] if held else []), (i, known)
        _, http, _ = await sc.call("GET", f"/v1/{sc.t}/history/users/{uid}/licences", "auditor",
                                   asOf=sc.marks[i].isoformat(), **({"knownAt": str(known)} if known else {}))
        assert out == http
        if i == 3:
            code, rp, err = cli(sc, cli_env, "licences", "--user", uid, *args, "--engine", "replay")
            assert code == 0 and [x["pool_id"] for x in rp["licences"]] == [x["pool_id"] for x in out["licences"]]
    for known, used in [(None, 0), (before_correction, 1)]:
        code, out, err = cli(sc, cli_env, "usage", "--as-of", sc.marks[3].isoformat(),
                             *(["--known-at", str(known)] if known else []))
        assert code == 0, err
        assert out["pools"] == [{"pool_id": "p1", "product_id": "pro", "seats": 5, "used": used, "active": used,
                                 "suspended": 0, "waiting": 0}]
        assert out["knownAt"]["seq"] == (known or sc.seq_at[6])


async def test_user_and_group_as_they_were(scenario, cli_env):
    sc, uid, gid = scenario
    code, out, err = cli(sc, cli_env, "resource", "--user", uid, "--as-of", sc.marks[3].isoformat())
    assert code == 0, err
    assert (out["id"], out["userName"], out["title"], out["active"]) == (uid, "ada", "Lead", True)
    assert out["meta"]["version"] == 'W/"2"' and out["asOf"] == sc.marks[3].isoformat()
    _, http, _ = await sc.call("GET", f"/v1/{sc.t}/history/users/{uid}", "auditor", asOf=sc.marks[3].isoformat())
    assert out == http
    # deleted since: gone at marks[6], but still there as the ledger knew it before the deletion
    code, out, _ = cli(sc, cli_env, "resource", "--user", uid, "--as-of", sc.marks[6].isoformat())
    assert code == 1 and out["error"].startswith(f"User {uid} was deleted at ") and "deleted_at" in out
    code, out, _ = cli(sc, cli_env, "resource", "--user", uid, "--as-of", sc.marks[6].isoformat(),
                       "--known-at", str(sc.seq_at[5]))
    assert code == 0 and out["active"] is False
    code, out, _ = cli(sc, cli_env, "resource", "--user", uid, "--as-of", sc.marks[0].isoformat())
    assert code == 1 and out["error"] == f"no User {uid} existed at {sc.marks[0].isoformat()}"
    code, out, _ = cli(sc, cli_env, "resource", "--group", gid, "--as-of", sc.marks[3].isoformat())
    assert code == 0 and out["displayName"] == "Design" and out["members"] == [{"value": uid}]
    code, out, _ = cli(sc, cli_env, "resource", "--group", gid, "--as-of", sc.marks[6].isoformat())
    assert code == 0 and out["members"] == []


async def test_timelines_with_and_without_known_at(scenario, cli_env):
    sc, uid, gid = scenario
    code, now, err = cli(sc, cli_env, "timeline", "--user", uid)
    assert code == 0, err
    [iv] = now["intervals"]
    assert sc.marks[1].isoformat() < iv["from"] < sc.marks[2].isoformat()
    assert iv["to"] == sc.marks[3].isoformat()
    assert (iv["opened_by"]["type"], iv["closed_by"]["type"], iv["closed_by"]["reason"]) == \
        ("SeatAssigned", "SeatEndCorrected", "left early")
    # before the correction the ledger said the holding ended with the deactivation
    code, old, _ = cli(sc, cli_env, "timeline", "--user", uid, "--known-at", str(sc.seq_at[4]))
    [ov] = old["intervals"]
    assert ov["from"] == iv["from"] and sc.marks[3].isoformat() < ov["to"] < sc.marks[4].isoformat()
    assert (ov["closed_by"]["type"], ov["closed_by"]["reason"]) == ("SeatReleased", "deactivated")
    _, http, _ = await sc.call("GET", f"/v1/{sc.t}/history/users/{uid}/timeline", "auditor", knownAt=str(sc.seq_at[4]))
    assert old == http
    code, pool, _ = cli(sc, cli_env, "timeline", "--pool", "p1")
    assert code == 0 and pool["intervals"] == now["intervals"] and pool["pool_id"] == "p1"
    code, pool, _ = cli(sc, cli_env, "timeline", "--pool", "p1", "--known-at", sc.marks[1].isoformat())
    assert code == 0 and pool["intervals"] == []


async def test_bad_times_exit_2_with_a_message(scenario, cli_env):
    sc, uid, gid = scenario
    code, out, err = cli(sc, cli_env, "usage", "--as-of", "yesterday")
    assert code == 2 and out is None and "--as-of" in err and "ISO 8601" in err
    code, out, err = cli(sc, cli_env, "resource", "--user", uid, "--known-at", "soon")
    assert code == 2 and "--known-at" in err
    code, out, err = cli(sc, cli_env, "holders", "--pool", "p1", "--as-of", "2024-05-01T09:00:00")
    assert code == 2 and "--as-of: needs a timezone" in err
