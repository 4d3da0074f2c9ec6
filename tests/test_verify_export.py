"""The standalone export verifier, run as an auditor would: a subprocess on a real export.

Every tamper kind is caught by both verifiers — the database one (`ledger.verify`) and
`scripts/verify_export.py` — and they name the same sequence and the same broken check.
"""
from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys

import pytest
from aiohttp import ClientSession

from ledger import canonical
from ledger.events import NewEvent
from ledger.store import StreamChange
from ledger.verify import verify_tenant
from toy_domain import Noted, PersonNamed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "verify_export.py")


def run_script(*args, stdin=None, python_flags=()):
    p = subprocess.run([sys.executable, *python_flags, SCRIPT, *map(str, args)], capture_output=True,
                       input=stdin, timeout=60, cwd="/")
    return p.returncode, p.stdout.decode(), p.stderr.decode()


async def fetch(srv, path, token, params=None):
    async with ClientSession() as s:
        async with s.get(str(srv.make_url(path)), headers={"Authorization": f"Bearer {token}"},
                         params=params) as r:
            assert r.status == 200, await r.text()
            return await r.read()


async def seed(store, tenant, n=8):
    for i in range(n):
        await store.append(tenant, [StreamChange(f"s{i % 2}", None, [NewEvent(Noted(text=f"e{i}", n=i))])],
                           {"actor": "alice", "source": "admin", "causation_id": f"c{i}"})
    await store.append(tenant, [StreamChange("user-u1", 0, [NewEvent(PersonNamed(person="u1", email="a@b.c"))])],
                       {"actor": "idp", "source": "scim"})


@pytest.fixture
async def ledger(service, tenant_tokens):
    """(server, runtime, tenant, auditor token) with a seeded ledger."""
    srv, rt = service
    await seed(rt.store, tenant_tokens["tenant"])
    return srv, rt, tenant_tokens["tenant"], tenant_tokens["auditor"]


async def export_to(ledger, path, **params):
    srv, _, t, tok = ledger
    path.write_bytes(await fetch(srv, f"/v1/{t}/audit/export", tok, {k: str(v) for k, v in params.items()}))
    return path


def lines_of(path):
    return path.read_bytes().splitlines(keepends=True)


async def test_intact_export_verifies(ledger, tmp_path):
    _, rt, t, _ = ledger
    seq, h = await rt.store.head(t)
    f = await export_to(ledger, tmp_path / "x.jsonl")
    code, out, err = run_script(f)
    assert code == 0, out + err
    assert out.splitlines()[0] == f"chain intact through sequence {seq}, head {h.hex()}"
    code, out, _ = run_script("-", stdin=f.read_bytes())             # stdin works the same
    assert code == 0 and f"through sequence {seq}," in out
    c = await export_to(ledger, tmp_path / "x.csv", format="csv")    # so does a CSV export
    code, out, _ = run_script(c)
    assert code == 0 and out.splitlines()[0] == f"chain intact through sequence {seq}, head {h.hex()}"


def _edit_canonical_byte(lines, i):
    rec = json.loads(lines[i])
    b = bytearray(base64.b64decode(rec["canonical"]))
    pos = bytes(b).index(b'"e')
    b[pos + 2] ^= 0x01      # "e3" -> "e2": still valid JSON, one byte changed
    rec["canonical"] = base64.b64encode(bytes(b)).decode()
    lines[i] = json.dumps(rec).encode() + b"\n"
    return lines


def _edit_raw_byte(lines, i):
    s = bytearray(lines[i])
    pos = s.index(b'"hash":"') + 20
    s[pos] = ord("0") if s[pos] != ord("0") else ord("1")
    lines[i] = bytes(s)
    return lines


def _set(lines, i, **kw):
    rec = json.loads(lines[i])
    rec.update(kw)
    lines[i] = json.dumps(rec).encode() + b"\n"
    return lines


# (tamper, seq reported, what). Lines are 0-based; the tenant's own events come first (seq 1..6).
FILE_TAMPERS = {
    "one byte of the canonical bytes": (lambda ls: _edit_canonical_byte(ls, 9), 10, "hash"),
    "one byte of a stated hash": (lambda ls: _edit_raw_byte(ls, 9), 10, "hash"),
    "a row removed": (lambda ls: ls[:9] + ls[10:], 10, "sequence"),
    "two rows swapped": (lambda ls: ls[:8] + [ls[10], ls[9], ls[8]] + ls[11:], 9, "sequence"),
    "a line replaced by garbage": (lambda ls: ls[:-1] + [b"{not json\n"], 15, "line 15"),
    "an actor column edited": (lambda ls: _set(ls, 9, actor="mallory"), 10, "column actor"),
    "a causation column edited": (lambda ls: _set(ls, 9, causation_id="c0"), 10, "column causation_id"),
    "a stored data column edited": (lambda ls: _set(ls, 9, data={"text": "zz", "n": 3}), 10, "column data"),
    "a recorded time edited": (lambda ls: _set(ls, 9, recorded_at="2020-01-01T00:00:00+00:00"), 10,
                               "column recorded_us"),
    "a type edited": (lambda ls: _set(ls, 9, type="ToyPersonNamed"), 10, "column type"),
}


@pytest.mark.parametrize("kind", FILE_TAMPERS)
async def test_edited_export_is_caught(ledger, tmp_path, kind):
    tamper, seq, what = FILE_TAMPERS[kind]
    f = await export_to(ledger, tmp_path / "x.jsonl")
    assert len(lines_of(f)) == 15
    f.write_bytes(b"".join(tamper(lines_of(f))))
    code, out, err = run_script(f)
    assert code == 1, out + err
    assert out.startswith(f"broken at sequence {seq}: {what}: expected "), out


async def tamper_db(pg_pool, sql, *args):
    async with pg_pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql, *args)


DB_TAMPERS = {
    "one byte of the canonical bytes":
        ("UPDATE events SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), '\"e3\"', '\"e2\"'), "
         "'UTF8') WHERE tenant_id = $1 AND seq = 10", 10, "hash"),
    "a row removed": ("DELETE FROM events WHERE tenant_id = $1 AND seq = 10", 10, "sequence"),
    "two rows swapped": ("UPDATE events SET seq = CASE seq WHEN 9 THEN 11 ELSE 9 END "
                         "WHERE tenant_id = $1 AND seq IN (9, 11)", 9, "prev_hash"),
    "metadata actor edited": ("UPDATE events SET metadata = jsonb_set(metadata, '{actor}', '\"mallory\"') "
                              "WHERE tenant_id = $1 AND seq = 10", 10, "column metadata"),
    "data edited": ("UPDATE events SET data = jsonb_set(data, '{text}', '\"x\"') WHERE tenant_id = $1 AND seq = 10",
                    10, "column data"),
    "effective time edited": ("UPDATE events SET effective_at = effective_at - interval '1 day' "
                              "WHERE tenant_id = $1 AND seq = 10", 10, "column effective_us"),
    "stream edited": ("UPDATE events SET stream = 's9' WHERE tenant_id = $1 AND seq = 10", 10, "column stream"),
}


@pytest.mark.parametrize("kind", DB_TAMPERS)
async def test_both_verifiers_catch_each_database_tamper(ledger, pg_pool, app_pool, tmp_path, kind):
    sql, seq, what = DB_TAMPERS[kind]
    _, _, t, _ = ledger
    if kind == "two rows swapped":    # through free sequences: (tenant, seq) is unique
        await tamper_db(pg_pool, "UPDATE events SET seq = seq + 1000 WHERE tenant_id = $1 AND seq IN (9, 11)", t)
        sql = sql.replace("seq IN (9, 11)", "seq IN (1009, 1011)").replace("WHEN 9", "WHEN 1009")
    await tamper_db(pg_pool, sql, t)
    async with app_pool.acquire() as conn:
        rep = await verify_tenant(conn, t)
    assert not rep.ok and (rep.broken.seq, rep.broken.what) == (seq, what), str(rep.broken)
    f = await export_to(ledger, tmp_path / "x.jsonl")
    code, out, _ = run_script(f)
    assert code == 1 and out.startswith(f"broken at sequence {seq}: {what}: "), out
    # the same report (the found side of a jsonb column may list its keys in another order)
    assert out.split(", found")[0] == str(rep.broken).split(": ", 1)[1].replace("chain broken", "broken").split(", found")[0]


async def forge(pg_pool, tenant, at_seq=3):
    """Rewrite event `at_seq` and recompute every hash after it, and the head: internally consistent."""
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch("SELECT seq, canonical FROM events WHERE tenant_id = $1 ORDER BY seq", tenant)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            prev = canonical.GENESIS
            for r in rows:
                canon = bytes(r["canonical"])
                if r["seq"] == at_seq:
                    doc = json.loads(canon)
                    doc["metadata"]["actor"] = "mallory"
                    canon = canonical.dumps(doc)
                    await conn.execute("UPDATE events SET metadata = $3::jsonb WHERE tenant_id = $1 AND seq = $2",
                                       tenant, at_seq, json.dumps(doc["metadata"]))
                h = canonical.chain(prev, canon)
                await conn.execute("UPDATE events SET canonical = $3, prev_hash = $4, hash = $5 "
                                   "WHERE tenant_id = $1 AND seq = $2", tenant, r["seq"], canon, prev, h)
                prev = h
            await conn.execute("UPDATE tenant_heads SET hash = $2 WHERE tenant_id = $1", tenant, prev)
    return prev


async def test_forged_rehashed_chain_is_caught_against_a_signed_head(ledger, pg_pool, app_pool, tmp_path):
    srv, rt, t, tok = ledger
    head_file = tmp_path / "head.json"
    head_file.write_bytes(await fetch(srv, f"/v1/{t}/audit/head", tok))
    key_file = tmp_path / "key.json"
    async with ClientSession() as s:
        async with s.get(str(srv.make_url("/v1/audit/public-key"))) as r:
            key_file.write_bytes(await r.read())
    head = json.loads(head_file.read_bytes())
    before = await export_to(ledger, tmp_path / "before.jsonl")
    code, out, _ = run_script(before, "--head", head_file, "--public-key", key_file)
    assert code == 0 and "head signature valid" in out and f"reaches the recorded head: sequence {head['seq']}" in out
    # the key as plain PEM works too
    pem = tmp_path / "key.pem"
    pem.write_text(json.loads(key_file.read_bytes())["public_key_pem"])
    assert run_script(before, "--head", head_file, "--public-key", pem)[0] == 0

    forged_head = await forge(pg_pool, t)
    after = await export_to(ledger, tmp_path / "after.jsonl")
    code, out, _ = run_script(after)
    assert code == 0, "a re-hashed chain is internally consistent"
    code, out, _ = run_script(after, "--head", head_file, "--public-key", key_file)
    assert code == 1
    assert out.startswith(f"broken at sequence {head['seq']}: recorded head: expected {head['hash']}, "
                          f"found {forged_head.hex()}"), out
    async with app_pool.acquire() as conn:
        rep = await verify_tenant(conn, t, expect_head=(head["seq"], head["hash"]))
    assert not rep.ok and (rep.broken.seq, rep.broken.what) == (head["seq"], "recorded head")

    # the forger also edits the auditor's head file to match: the signature gives it away
    doctored = tmp_path / "doctored.json"
    doctored.write_text(json.dumps({**head, "hash": forged_head.hex()}))
    code, out, _ = run_script(after, "--head", doctored, "--public-key", key_file)
    assert code == 1 and "chain intact" in out and "head signature invalid" in out, out
    sig = bytearray(base64.b64decode(head["signature"]))
    sig[0] ^= 1
    doctored.write_text(json.dumps({**head, "signature": base64.b64encode(bytes(sig)).decode()}))
    code, out, _ = run_script(before, "--head", doctored, "--public-key", key_file)
    assert code == 1 and "head signature invalid" in out, out
    # ... or re-signs with a key of their own
    from ledger.signing import Signer
    mine = Signer.load(tmp_path / "forger.pem").sign_head(t, head["seq"], forged_head.hex()).as_dict()
    doctored.write_text(json.dumps(mine))
    code, out, _ = run_script(after, "--head", doctored, "--public-key", key_file)
    assert code == 1 and "head signature invalid: signed by key" in out, out


async def test_head_beyond_or_before_the_export(ledger, tmp_path):
    srv, rt, t, tok = ledger
    head = json.loads(await fetch(srv, f"/v1/{t}/audit/head", tok))
    part = await export_to(ledger, tmp_path / "p.jsonl", to_seq=head["seq"] - 2)
    hf = tmp_path / "head.json"
    hf.write_text(json.dumps(head))
    code, out, _ = run_script(part, "--head", hf)
    assert code == 1 and "recorded head" in out and "chain ends before it" in out, out
    hf.write_text(json.dumps({**head, "tenant": "someone-else"}))
    full = await export_to(ledger, tmp_path / "f.jsonl")
    code, out, _ = run_script(full, "--head", hf)
    assert code == 1 and "recorded head tenant" in out, out


async def test_ranges_need_the_hash_they_continue_from(ledger, tmp_path):
    srv, rt, t, tok = ledger
    seq, h = await rt.store.head(t)
    full = [json.loads(x) for x in lines_of(await export_to(ledger, tmp_path / "f.jsonl"))]
    part = await export_to(ledger, tmp_path / "p.jsonl", from_seq=4)
    code, out, _ = run_script(part)
    assert code == 1 and out.startswith("broken at sequence 1: sequence: expected 1, found 4"), out
    code, out, _ = run_script(part, "--prev-hash", full[2]["hash"])
    assert code == 0 and out.startswith(f"chain intact through sequence {seq}, head {h.hex()}"), out
    assert f"sequences 4..{seq}" in out
    code, out, _ = run_script(part, "--prev-hash", f"3:{full[2]['hash']}")
    assert code == 0, out
    code, out, _ = run_script(part, "--prev-hash", f"2:{full[2]['hash']}")
    assert code == 1 and out.startswith("broken at sequence 3: sequence: expected 3, found 4"), out
    code, out, _ = run_script(part, "--prev-hash", full[1]["hash"])
    assert code == 1 and out.startswith(f"broken at sequence 4: prev_hash: expected {full[1]['hash']}"), out
    # a recorded head just before the range is checked against --prev-hash
    hf = tmp_path / "h.json"
    hf.write_text(json.dumps({"tenant": t, "seq": 3, "hash": full[2]["hash"]}))
    code, out, _ = run_script(part, "--prev-hash", full[2]["hash"], "--head", hf)
    assert code == 0 and "the head carries no signature" in out, out


async def test_runs_on_the_standard_library_alone(ledger, tmp_path):
    """`python -S` has no site-packages: the chain is still checked; only the signature is skipped."""
    srv, rt, t, tok = ledger
    hf = tmp_path / "head.json"
    hf.write_bytes(await fetch(srv, f"/v1/{t}/audit/head", tok))
    f = await export_to(ledger, tmp_path / "x.jsonl")
    code, out, err = run_script(f, "--head", hf, python_flags=("-S", "-I"))
    assert code == 0, out + err
    assert "chain intact" in out and "signature not checked: cryptography not installed" in out
    code, out, _ = run_script(f, "--head", hf)
    assert code == 0 and "signature not checked: no --public-key given" in out
    # and it imports nothing but the standard library (cryptography only, optionally, for the signature)
    tree = ast.parse(open(SCRIPT).read())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods - set(sys.stdlib_module_names) == {"cryptography"}, mods
    assert "__future__" in mods


async def test_empty_and_unusable_input(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    code, out, _ = run_script(empty)
    assert code == 0 and out.startswith(f"chain intact through sequence 0, head {'00' * 32}")
    assert run_script(tmp_path / "missing.jsonl")[0] == 2
    assert run_script(empty, "--prev-hash", "xyz")[0] == 2
