"""The audit trail over HTTP and the CLI: queries with filters and cursors, exports, signed heads."""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import ClientSession

from ledger.events import NewEvent
from ledger.signing import head_message, verify_head
from ledger.store import StreamChange
from toy_domain import Noted, PersonNamed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


async def http(srv, path, token=None, params=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as s:
        async with s.get(str(srv.make_url(path)), headers=headers, params=params) as r:
            body = await r.read()
            return r.status, body, r.headers


async def get_json(srv, path, token=None, params=None):
    status, body, _ = await http(srv, path, token, params)
    return status, json.loads(body)


async def seed(store, tenant):
    """Nine events after the tenant's own, varied in stream, type, actor, source and effective time."""
    for i in range(6):
        await store.append(tenant, [StreamChange("s-a" if i % 2 == 0 else "s-b", None, [
            NewEvent(Noted(text=f"e{i}", n=i), effective_at=T0 + timedelta(days=i))])],
            {"actor": "alice" if i < 3 else "bob", "source": "admin" if i % 3 else "scim",
             "causation_id": f"c{i}"})
    await store.append(tenant, [StreamChange("user-u1", 0, [
        NewEvent(PersonNamed(person="u1", email="ada@example.com", display="Ada"))])],
        {"actor": "idp", "source": "scim"})
    await store.append(tenant, [StreamChange("s-a", None, [NewEvent(Noted(text="x1")), NewEvent(Noted(text="x2"))])],
                       {"actor": "carol", "source": "api"})


async def db_events(pool, tenant):
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT seq, stream, stream_version, type, metadata->>'actor' AS actor, "
                                "metadata->>'source' AS source, metadata->>'causation_id' AS causation_id, "
                                "effective_at, recorded_at, canonical, prev_hash, hash FROM events "
                                "WHERE tenant_id = $1 ORDER BY seq", tenant)


async def all_pages(srv, tenant, token, params, limit):
    seqs, cursor, pages = [], None, 0
    while True:
        p = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        status, body = await get_json(srv, f"/v1/{tenant}/audit/events", token, p)
        assert status == 200, body
        pages += 1
        assert len(body["events"]) <= limit
        seqs += [e["seq"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seqs, pages


async def test_query_filters_match_the_database(service, tenant_tokens, app_pool):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["auditor"]
    await seed(rt.store, t)
    rows = await db_events(app_pool, t)
    status, body = await get_json(srv, f"/v1/{t}/audit/events", tok, {"limit": "1000"})
    assert status == 200 and body["tenant"] == t and body["next_cursor"] is None
    assert [e["seq"] for e in body["events"]] == [r["seq"] for r in rows]
    e = body["events"][-1]
    assert set(e) >= {"seq", "stream", "stream_version", "type", "schema_version", "effective_at", "recorded_at",
                      "data", "metadata", "hash", "prev_hash"}
    assert e["hash"] == bytes(rows[-1]["hash"]).hex() and e["prev_hash"] == bytes(rows[-1]["prev_hash"]).hex()
    assert e["data"] == {"text": "x2", "n": 0} and e["metadata"] == {"actor": "carol", "source": "api"}

    cases = [
        ({"stream": "s-a"}, lambda r: r["stream"] == "s-a"),
        ({"type": "ToyPersonNamed"}, lambda r: r["type"] == "ToyPersonNamed"),
        ({"actor": "alice"}, lambda r: r["actor"] == "alice"),
        ({"source": "scim"}, lambda r: r["source"] == "scim"),
        ({"actor": "bob", "source": "admin", "stream": "s-b"},
         lambda r: (r["actor"], r["source"], r["stream"]) == ("bob", "admin", "s-b")),
        ({"time": "effective", "from": (T0 + timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=4)).isoformat()},
         lambda r: T0 + timedelta(days=1) <= r["effective_at"] < T0 + timedelta(days=4)),
        ({"from": rows[8]["recorded_at"].isoformat(), "to": rows[-1]["recorded_at"].isoformat()},
         lambda r: rows[8]["recorded_at"] <= r["recorded_at"] < rows[-1]["recorded_at"]),
        ({"time": "recorded", "from": rows[0]["recorded_at"].isoformat().replace("+00:00", "Z")}, lambda r: True),
        ({"actor": "nobody"}, lambda r: False),
    ]
    for params, pred in cases:
        want = [r["seq"] for r in rows if pred(r)]
        status, body = await get_json(srv, f"/v1/{t}/audit/events", tok, params)
        assert status == 200, (params, body)
        assert [e["seq"] for e in body["events"]] == want, params
        assert want or params == {"actor": "nobody"}
        # and page by page with a small limit: the same events, in order, none twice
        got, pages = await all_pages(srv, t, tok, params, 2)
        assert got == want and pages == max(1, -(-len(want) // 2)), params


async def test_personal_data_stays_sealed(service, tenant_tokens):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["admin"]
    await seed(rt.store, t)
    status, body, _ = await http(srv, f"/v1/{t}/audit/events", tok, {"type": "ToyPersonNamed"})
    assert status == 200 and b"ada@example.com" not in body and b"Ada" not in body
    ev = json.loads(body)["events"][0]
    assert "_pii" in ev["data"] and ev["data"]["person"] == "u1"
    for fmt in ("jsonl", "csv"):
        status, body, _ = await http(srv, f"/v1/{t}/audit/export", tok, {"format": fmt})
        assert status == 200 and b"ada@example.com" not in body


async def test_cursor_is_stable_while_events_are_appended(service, tenant_tokens):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["auditor"]
    await seed(rt.store, t)
    status, first = await get_json(srv, f"/v1/{t}/audit/events", tok, {"stream": "s-a", "limit": "2"})
    await rt.store.append(t, [StreamChange("s-a", None, [NewEvent(Noted(text="late"))])], {"actor": "z"})
    status, second = await get_json(srv, f"/v1/{t}/audit/events", tok,
                                    {"stream": "s-a", "limit": "100", "cursor": first["next_cursor"]})
    seqs = [e["seq"] for e in first["events"] + second["events"]]
    assert seqs == sorted(set(seqs)) and second["events"][-1]["data"]["text"] == "late"
    # a cursor belongs to its filters
    status, body = await get_json(srv, f"/v1/{t}/audit/events", tok, {"stream": "s-b", "cursor": first["next_cursor"]})
    assert status == 400 and body["field"] == "cursor"


@pytest.mark.parametrize("params,field", [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"from": "yesterday"}, "from"), ({"to": "2024-01-01T00:00:00"}, "to"), ({"time": "wall"}, "time"),
    ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "to"), ({"cursor": "garbage!"}, "cursor"),
    ({"actors": "alice"}, "actors"), ({"stream": ""}, "stream"), ({"type": "x' OR '1'='1"}, None),
])
async def test_bad_query_parameters_are_400_naming_the_field(service, tenant_tokens, params, field):
    srv, _ = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["auditor"]
    status, body = await get_json(srv, f"/v1/{t}/audit/events", tok, params)
    if field is None:        # injection attempts are just values that match nothing
        assert status == 200 and body["events"] == []
    else:
        assert status == 400 and body["field"] == field and field in body["error"], body


@pytest.mark.parametrize("params,field", [
    ({"format": "xml"}, "format"), ({"from_seq": "0"}, "from_seq"), ({"from_seq": "-1"}, "from_seq"),
    ({"from_seq": "5", "to_seq": "4"}, "to_seq"), ({"to_seq": "x"}, "to_seq"), ({"limit": "3"}, "limit"),
])
async def test_bad_export_parameters_are_400(service, tenant_tokens, params, field):
    srv, _ = service
    status, body = await get_json(srv, f"/v1/{tenant_tokens['tenant']}/audit/export", tenant_tokens["auditor"], params)
    assert status == 400 and body["field"] == field, body


async def test_scopes_and_tenants(service, tenant_tokens):
    srv, rt = service
    t = tenant_tokens["tenant"]
    other = t + "-o"
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    await rt.bus.execute(other, CreateTenant(other, other))
    other_auditor = IssueToken("auditor")
    await rt.bus.execute(other, other_auditor)
    for path in ("audit/events", "audit/export", "audit/head"):
        assert (await http(srv, f"/v1/{t}/{path}", tenant_tokens["scim"]))[0] == 403, path
        assert (await http(srv, f"/v1/{t}/{path}", tenant_tokens["billing"]))[0] == 403, path
        assert (await http(srv, f"/v1/{t}/{path}", other_auditor.token))[0] == 403, path
        assert (await http(srv, f"/v1/{t}/{path}"))[0] == 401, path
        assert (await http(srv, f"/v1/{t}/{path}", tenant_tokens["auditor"]))[0] == 200, path
        assert (await http(srv, f"/v1/{t}/{path}", tenant_tokens["admin"]))[0] == 200, path


async def test_export_jsonl_and_csv_match_the_database(service, tenant_tokens, app_pool):
    srv, rt = service
    t, tok = tenant_tokens["tenant"], tenant_tokens["auditor"]
    await seed(rt.store, t)
    rows = await db_events(app_pool, t)
    status, body, headers = await http(srv, f"/v1/{t}/audit/export", tok)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["X-Seatledger-Head-Seq"] == str(rows[-1]["seq"])
    lines = [json.loads(x) for x in body.splitlines()]
    assert len(lines) == len(rows)
    for line, r in zip(lines, rows):
        assert base64.b64decode(line["canonical"]) == bytes(r["canonical"])
        assert (line["seq"], line["hash"], line["prev_hash"]) == (r["seq"], bytes(r["hash"]).hex(),
                                                                  bytes(r["prev_hash"]).hex())
        assert (line["actor"], line["source"], line["causation_id"]) == (r["actor"], r["source"], r["causation_id"])
        assert line["tenant"] == t and line["stream"] == r["stream"] and line["type"] == r["type"]
        doc = json.loads(base64.b64decode(line["canonical"]))
        assert doc["metadata"] == line["metadata"] and doc["data"] == line["data"]

    status, body, headers = await http(srv, f"/v1/{t}/audit/export", tok, {"format": "csv", "from_seq": "3",
                                                                           "to_seq": "9"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    recs = list(csv.DictReader(io.StringIO(body.decode())))
    assert [int(x["seq"]) for x in recs] == list(range(3, 10))
    for rec, r in zip(recs, rows[2:9]):
        assert base64.b64decode(rec["canonical"]) == bytes(r["canonical"])
        assert rec["hash"] == bytes(r["hash"]).hex() and rec["prev_hash"] == bytes(r["prev_hash"]).hex()
        assert rec["actor"] == (r["actor"] or "") and rec["causation_id"] == (r["causation_id"] or "")
    # past the head: just what exists
    status, body, _ = await http(srv, f"/v1/{t}/audit/export", tok, {"from_seq": str(len(rows)), "to_seq": "999"})
    assert [json.loads(x)["seq"] for x in body.splitlines()] == [len(rows)]


async def test_export_streams_in_chunks(app_pool, store, tenant):
    """Rows come from a cursor a chunk at a time (constant memory), in one consistent snapshot."""
    from api.audit_export import export_chunks, snapshot
    for i in range(25):
        await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text=str(i)))])])
    async with app_pool.acquire() as conn:
        async with snapshot(conn):
            chunks = []
            async for c in export_chunks(conn, tenant, "jsonl", chunk_rows=10):
                if not chunks:     # a write after the snapshot began is not in this export
                    await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text="later"))])])
                chunks.append(c)
    assert [c.count(b"\n") for c in chunks] == [10, 10, 5]


async def test_signed_head_and_public_key(service, tenant_tokens):
    srv, rt = service
    t = tenant_tokens["tenant"]
    await seed(rt.store, t)
    status, head = await get_json(srv, f"/v1/{t}/audit/head", tenant_tokens["auditor"])
    seq, h = await rt.store.head(t)
    assert status == 200 and head["tenant"] == t and head["seq"] == seq and head["hash"] == h.hex()
    assert set(head) == {"tenant", "seq", "hash", "signed_at", "key_id", "signature"}
    status, key = await get_json(srv, "/v1/audit/public-key")          # no authentication
    assert status == 200 and key["algorithm"] == "Ed25519" and key["key_id"] == head["key_id"]
    assert verify_head(key["public_key_pem"], head)
    status, pem, _ = await http(srv, "/v1/audit/public-key", params={"format": "pem"})
    assert status == 200 and pem.decode() == key["public_key_pem"]
    assert head_message(t, seq, h.hex(), head["signed_at"]) == json.dumps(
        {k: head[k] for k in ("hash", "seq", "signed_at", "tenant")}, separators=(",", ":")).encode()
    for forged in ({**head, "seq": seq + 1}, {**head, "hash": "00" * 32}, {**head, "tenant": t + "x"},
                   {**head, "signature": base64.b64encode(b"\0" * 64).decode()}, {**head, "key_id": "0" * 16}):
        assert not verify_head(key["public_key_pem"], forged)


def test_signing_key_is_created_once_private_and_reused(tmp_path, monkeypatch):
    from ledger.signing import ENV_KEY, Signer
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.setenv("SEATLEDGER_DATA_DIR", str(tmp_path))
    a, b = Signer.load(), Signer.load()
    path = tmp_path / "keys" / "audit-ed25519.pem"
    assert a.key_id == b.key_id and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    monkeypatch.setenv(ENV_KEY, str(path))
    monkeypatch.setenv("SEATLEDGER_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Signer.load().key_id == a.key_id


@pytest.fixture(scope="module")
def cli_env(dsns):
    if dsns.embedded:
        from urllib.parse import urlsplit
        return {"SEATLEDGER_DATABASE": urlsplit(dsns.migrate).path.lstrip("/")}
    return {"SEATLEDGER_DATABASE_URL": dsns.migrate}


async def test_cli_export_equals_http_export(service, tenant_tokens, cli_env, tmp_path):
    srv, rt = service
    t = tenant_tokens["tenant"]
    await seed(rt.store, t)
    for fmt, extra, params in (("jsonl", [], {}), ("csv", ["--from-seq", "2", "--to-seq", "5"],
                                                   {"from_seq": "2", "to_seq": "5"})):
        out = tmp_path / f"e.{fmt}"
        p = subprocess.run([sys.executable, "-m", "api.cli", "export", "--tenant", t, "--format", fmt,
                            "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, **cli_env})
        assert p.returncode == 0, p.stderr
        _, body, _ = await http(srv, f"/v1/{t}/audit/export", tenant_tokens["auditor"], {"format": fmt, **params})
        assert out.read_bytes() == body
    p = subprocess.run([sys.executable, "-m", "api.cli", "export", "--tenant", "no-such-tenant-zz"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, **cli_env})
    assert p.returncode == 2 and "no such tenant" in p.stderr


async def test_export_failing_mid_stream_is_cut_not_completed(service, tenant_tokens, monkeypatch):
    """Once the headers are out an error cannot become a 500: the stream is cut (no final chunk), so a
    client can never mistake a truncated export for a complete one."""
    import aiohttp
    from api import audit_export
    srv, _ = service
    t = tenant_tokens["tenant"]

    async def broken(*a, **kw):
        yield b'{"seq": 1}\n'
        raise RuntimeError("database went away")

    monkeypatch.setattr(audit_export, "export_chunks", broken)
    async with ClientSession() as s:
        async with s.get(str(srv.make_url(f"/v1/{t}/audit/export")),
                         headers={"Authorization": f"Bearer {tenant_tokens['auditor']}"}) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
