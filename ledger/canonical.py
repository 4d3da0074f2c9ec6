"""The canonical bytes of an event: what is hashed, stored beside the columns, and exported.

Encoding 1: UTF-8 JSON, objects with keys sorted, no whitespace, arrays and objects whose leaves are
strings, integers, booleans or null (no floats: money and decimals travel as strings), times as
integer microseconds since the Unix epoch (UTC). The standard library's json module decodes it, so an
auditor needs nothing else. jsonb rewrites keys and numbers, which is why we never hash jsonb::text.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import orjson

ENCODING = 1
GENESIS = b"\x00" * 32
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_micros(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("naive datetime in an event")
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_micros(us: int) -> datetime:
    # positional (days, seconds, microseconds): parsing a keyword costs more than the sum, and a rebuild
    # makes a million of these
    return _EPOCH + timedelta(0, 0, us)


_LEAF_TYPES = (str, int, bool, type(None))


def check(value, path="$") -> None:
    """Raise ValueError unless every leaf of `value` is a string, integer, boolean or null."""
    if type(value) is dict and all(type(v) in _LEAF_TYPES for v in value.values()) \
            and all(type(k) is str for k in value):
        return                  # a flat object of leaves (most metadata): nothing to walk
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        raise ValueError(f"float at {path}: encode numbers as integers or strings")
    if isinstance(value, list):
        for i, v in enumerate(value):
            check(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"non-string key at {path}")
            check(v, f"{path}.{k}")
        return
    raise ValueError(f"unsupported {type(value).__name__} at {path}")


def dumps(obj) -> bytes:
    """Encode a document after checking every leaf."""
    check(obj)
    return dumps_checked(obj)


def dumps_checked(obj) -> bytes:
    """Encode a document whose every leaf the caller has already checked (the append path checks a
    command's metadata once for all its events; the other fields are typed by the store itself)."""
    # orjson with sorted keys emits exactly json.dumps(sort_keys=True, separators=(",", ":"),
    # ensure_ascii=False) for these values (ASCII keys, no floats), several times faster.
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def event_document(*, tenant: str, seq: int, stream: str, stream_version: int, type: str,
                   schema_version: int, effective_us: int, recorded_us: int,
                   idempotency_key: str | None, metadata: dict, data: dict) -> dict:
    """The document whose canonical bytes are hashed; times in integer microseconds (`to_micros`)."""
    return {
        "v": ENCODING, "tenant": tenant, "seq": seq, "stream": stream,
        "stream_version": stream_version, "type": type, "schema_version": schema_version,
        "effective_us": effective_us, "recorded_us": recorded_us,
        "idempotency_key": idempotency_key, "metadata": metadata, "data": data,
    }


def chain(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()
