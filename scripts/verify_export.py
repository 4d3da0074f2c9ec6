#!/usr/bin/env python3
"""Verify a seatledger export with nothing but the Python standard library.

    python verify_export.py EXPORT.jsonl                 # or - (stdin); CSV exports work too
    python verify_export.py part2.jsonl --prev-hash [SEQ:]HEX   # a range that does not start at 1
    python verify_export.py EXPORT.jsonl --head head.json --public-key key.pem

For every event: the sequence follows the previous one (the export starts at 1 from the genesis hash
of 32 zero bytes, unless --prev-hash gives the hash the range continues from); prev_hash is the
previous event's hash; sha256(prev_hash || canonical) is the stated hash; the canonical bytes (the
exact bytes that were hashed) are JSON whose fields match the exported columns (seq, tenant, stream,
type, times, metadata with actor/source/causation, data...).

--head FILE: a signed head saved from GET /v1/<tenant>/audit/head. The export must reach that
sequence with that hash: an auditor who recorded a head earlier can prove nothing up to it changed,
even if someone re-hashed the whole chain since. The Ed25519 signature is checked when the
`cryptography` package is importable and --public-key (the PEM, or the JSON, served at
/v1/audit/public-key) is given; it is the only optional dependency.

Prints "chain intact through sequence N, head H" (exit 0) or the first broken link
"broken at sequence N: <what>: expected X, found Y" (exit 1). Exit 2: unusable arguments.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import csv
import hashlib
import io
import json
import sys
from datetime import datetime, timezone

GENESIS = b"\x00" * 32
ENCODING = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COLUMNS = ("tenant", "seq", "stream", "stream_version", "type", "schema_version", "idempotency_key")
_META = ("actor", "source", "request_id", "correlation_id", "causation_id")
_INT_CSV = ("seq", "stream_version", "schema_version", "encoding")


class Broken(Exception):
    def __init__(self, seq, what, expected, found):
        super().__init__(f"broken at sequence {seq}: {what}: expected {expected}, found {found}")
        self.seq, self.what, self.expected, self.found = seq, what, expected, found


def micros(iso: str) -> int:
    if iso.endswith("Z"):
        iso = iso[:-1] + "+00:00"
    t = datetime.fromisoformat(iso)
    if t.tzinfo is None:
        raise ValueError("no timezone")
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def records(fh):
    """(line number, record dict or None if unparseable) from a JSONL or CSV export."""
    first = fh.readline()
    if not first:
        return
    if first.lstrip().startswith(b"seq,"):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        header = next(csv.reader([first.decode("utf-8")]))
        for n, row in enumerate(csv.reader(text), 2):
            if not row:
                continue
            rec = dict(zip(header, row))
            try:
                for k in _INT_CSV:
                    if k in rec:
                        rec[k] = int(rec[k])
                for k in ("metadata", "data"):
                    if k in rec:
                        rec[k] = json.loads(rec[k])
            except ValueError:
                yield n, None
                continue
            for k in ("idempotency_key",) + _META:
                if rec.get(k) == "":
                    rec[k] = None
            yield n, rec
        return
    lines = [first]
    n = 0
    while True:
        for raw in lines:
            n += 1
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                rec = None
            yield n, rec if isinstance(rec, dict) else None
        lines = fh.readlines(1 << 20)
        if not lines:
            return


def _hex(value, seq, what) -> bytes:
    try:
        b = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise Broken(seq, what, "64 hex digits", repr(value)) from None
    if len(b) != 32:
        raise Broken(seq, what, "64 hex digits", repr(value))
    return b


def _show(v) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def check_event(rec: dict, prev: bytes, expected_seq: int) -> bytes:
    """Check one exported event against its predecessor's hash; returns its hash."""
    seq = rec.get("seq")
    if seq != expected_seq:      # a row removed (gap), rows swapped, or a row inserted
        raise Broken(expected_seq, "sequence", expected_seq, seq)
    got_prev = _hex(rec.get("prev_hash"), seq, "prev_hash")
    if got_prev != prev:
        raise Broken(seq, "prev_hash", prev.hex(), got_prev.hex())
    try:
        canon = base64.b64decode(rec.get("canonical") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Broken(seq, "canonical bytes", "base64", repr(rec.get("canonical"))[:80]) from None
    h = hashlib.sha256(prev + canon).digest()
    stated = _hex(rec.get("hash"), seq, "hash")
    if h != stated:
        raise Broken(seq, "hash", h.hex(), stated.hex())
    if rec.get("encoding", ENCODING) != ENCODING:
        raise Broken(seq, "encoding", ENCODING, rec.get("encoding"))
    try:
        doc = json.loads(canon.decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise Broken(seq, "canonical bytes", "JSON", exc) from None
    for k in _COLUMNS:
        if doc.get(k) != rec.get(k):
            raise Broken(seq, f"column {k}", _show(doc.get(k)), _show(rec.get(k)))
    for k, col in (("effective_us", "effective_at"), ("recorded_us", "recorded_at")):
        try:
            t = micros(rec.get(col))
        except (TypeError, ValueError, AttributeError):
            raise Broken(seq, f"column {k}", doc.get(k), repr(rec.get(col))) from None
        if doc.get(k) != t:
            raise Broken(seq, f"column {k}", doc.get(k), t)
    meta = doc.get("metadata") or {}
    for k in ("metadata", "data"):
        if k in rec and doc.get(k) != rec[k]:
            raise Broken(seq, f"column {k}", _show(doc.get(k)), _show(rec[k]))
    for k in _META:
        if meta.get(k) != rec.get(k):
            raise Broken(seq, f"column {k}", _show(meta.get(k)), _show(rec.get(k)))
    return h


def verify(fh, prev_hash: tuple | None = None, head: dict | None = None, tenant: str | None = None):
    """Returns (first_seq, last_seq, head_hash_hex); raises Broken at the first bad link."""
    prev, expected_seq, first_seq = GENESIS, 1, None
    if prev_hash is not None:
        start, prev = prev_hash
        expected_seq = None if start is None else start + 1
    head_seen = False
    last_tenant = tenant
    for n, rec in records(fh):
        if rec is None:
            raise Broken(expected_seq if expected_seq is not None else "?", f"line {n}",
                         "one JSON object per line", "unparseable")
        if expected_seq is None:      # --prev-hash without a sequence: the range starts where the file does
            expected_seq = rec.get("seq") if isinstance(rec.get("seq"), int) else 1
        if first_seq is None:
            first_seq = expected_seq
            if head is not None and head["seq"] == first_seq - 1:
                head_seen = True
                if head["hash"].lower() != prev.hex():
                    raise Broken(head["seq"], "recorded head", head["hash"], prev.hex())
        prev = check_event(rec, prev, expected_seq)
        if last_tenant is not None and rec["tenant"] != last_tenant:
            raise Broken(expected_seq, "tenant", last_tenant, rec["tenant"])
        last_tenant = rec["tenant"]
        if head is not None and expected_seq == head["seq"]:
            head_seen = True
            if head["hash"].lower() != prev.hex():
                raise Broken(head["seq"], "recorded head", head["hash"], prev.hex())
        expected_seq += 1
    last = (expected_seq or 1) - 1
    if first_seq is None:
        first_seq = last + 1
        if head is not None and head["seq"] == last:
            head_seen = True
            if head["hash"].lower() != prev.hex():
                raise Broken(head["seq"], "recorded head", head["hash"], prev.hex())
    if head is not None:
        if head.get("tenant") is not None and last_tenant is not None and head["tenant"] != last_tenant:
            raise Broken(head["seq"], "recorded head tenant", head["tenant"], last_tenant)
        if not head_seen:
            where = "chain ends before it" if head["seq"] > last else f"export starts after it (at {first_seq})"
            raise Broken(head["seq"], "recorded head", head["hash"], where)
    return first_seq, last, prev.hex()


def head_message(head: dict) -> bytes:
    return json.dumps({k: head[k] for k in ("tenant", "seq", "hash", "signed_at")},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check_signature(head: dict, public_key_file: str | None) -> tuple[bool | None, str]:
    """(True/False, message), or (None, why not checked)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None, "signature not checked: cryptography not installed"
    if not public_key_file:
        return None, "signature not checked: no --public-key given"
    with open(public_key_file, "rb") as f:
        raw = f.read()
    if raw.lstrip().startswith(b"{"):
        raw = json.loads(raw)["public_key_pem"].encode("ascii")
    pub = serialization.load_pem_public_key(raw)
    if not isinstance(pub, Ed25519PublicKey):
        return False, "head signature invalid: the public key is not an Ed25519 key"
    kid = hashlib.sha256(pub.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)).hexdigest()[:16]
    if head.get("key_id") not in (None, kid):
        return False, f"head signature invalid: signed by key {head.get('key_id')}, the public key is {kid}"
    try:
        pub.verify(base64.b64decode(head.get("signature") or "", validate=True), head_message(head))
    except (InvalidSignature, binascii.Error, ValueError):
        return False, f"head signature invalid (key {kid})"
    return True, f"head signature valid (key {kid}, signed at {head['signed_at']})"


def _load_head(path: str) -> dict:
    with open(path, "rb") as f:
        head = json.load(f)
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        raise ValueError("a head needs an integer seq and a hex hash")
    for k in ("tenant", "signed_at"):
        head.setdefault(k, None)
    return head


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="verify_export.py", description=__doc__.split("\n\n")[0])
    p.add_argument("export", nargs="?", default="-", help="the export (JSONL or CSV); - for stdin")
    p.add_argument("--prev-hash", metavar="[SEQ:]HEX",
                   help="the hash the export continues from (required when it does not start at sequence 1)")
    p.add_argument("--head", metavar="FILE", help="a signed head (JSON) the export must reach")
    p.add_argument("--public-key", metavar="FILE", help="the service's public key: PEM or the /v1/audit/public-key JSON")
    p.add_argument("--tenant", help="the tenant the export must belong to")
    a = p.parse_args(argv)
    prev = None
    try:
        if a.prev_hash:
            s, sep, h = a.prev_hash.rpartition(":")
            b = bytes.fromhex(h)
            if len(b) != 32:
                raise ValueError("--prev-hash: 64 hex digits")
            prev = (int(s) if sep else None, b)
        head = _load_head(a.head) if a.head else None
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sig_ok, sig_msg = (None, "")
    if head is not None:
        if head.get("signature") is None:
            sig_msg = "signature not checked: the head carries no signature"
        else:
            try:
                sig_ok, sig_msg = check_signature(head, a.public_key)
            except (OSError, ValueError, KeyError) as exc:
                print(f"error: --public-key: {exc}", file=sys.stderr)
                return 2
    try:
        fh = sys.stdin.buffer if a.export == "-" else open(a.export, "rb")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = 0
    try:
        with fh:
            first, last, head_hex = verify(fh, prev, head, a.tenant)
        print(f"chain intact through sequence {last}, head {head_hex}")
        print(f"{max(0, last - first + 1)} event(s) checked, sequences {first}..{last}")
        if head is not None:
            print(f"reaches the recorded head: sequence {head['seq']}, hash {head['hash'].lower()}")
    except Broken as exc:
        print(str(exc))
        code = 1
    if sig_msg:
        print(sig_msg)
    if sig_ok is False:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
