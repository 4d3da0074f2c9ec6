"""The personal-data envelope: personal fields of an event are encrypted with AES-256-GCM under a
key per (tenant, subject). Keys live in `subject_keys`, outside the hash chain, so destroying one
(erasure) makes the fields unreadable while every hash still verifies.
"""
from __future__ import annotations

import base64
import os

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE_KEY = "_pii"


def _aad(tenant: str, subject: str) -> bytes:
    return f"seatledger/pii/v1/{tenant}/{subject}".encode()


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, tenant: str, subject: str, fields: dict) -> dict:
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, orjson.dumps(fields), _aad(tenant, subject))
    return {"subject": subject, "alg": "A256GCM", "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ct).decode()}


def open_envelope(key: bytes, tenant: str, envelope: dict) -> dict:
    ct = base64.b64decode(envelope["ct"])
    nonce = base64.b64decode(envelope["nonce"])
    return orjson.loads(AESGCM(key).decrypt(nonce, ct, _aad(tenant, envelope["subject"])))


def split_personal(payload: dict, personal: frozenset[str]) -> tuple[dict, dict]:
    """(public part, personal part) of an event payload."""
    public = {k: v for k, v in payload.items() if k not in personal}
    private = {k: v for k, v in payload.items() if k in personal and v is not None}
    return public, private


class KeyRing:
    """Subject keys, cached per process. Keys never change, they only disappear (erasure), and an
    erasure clears the cache entry here and, via NOTIFY, in other processes."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], bytes] = {}

    def forget(self, tenant: str, subject: str | None = None) -> None:
        if subject is None:
            self._cache.clear()
        else:
            self._cache.pop((tenant, subject), None)

    async def get_or_create(self, conn, tenant: str, subjects: set[str]) -> dict[str, bytes]:
        """Called under the tenant lock, so no other writer of this tenant races us."""
        out = {s: self._cache[(tenant, s)] for s in subjects if (tenant, s) in self._cache}
        missing = [s for s in subjects if s not in out]
        if missing:
            rows = await conn.fetch(
                "SELECT subject, key FROM subject_keys WHERE tenant_id = $1 AND subject = ANY($2::text[])",
                tenant, missing)
            for r in rows:
                out[r["subject"]] = bytes(r["key"])
            new = [s for s in missing if s not in out]
            if new:
                erased = await conn.fetch(
                    "SELECT subject FROM erasures WHERE tenant_id = $1 AND subject = ANY($2::text[])",
                    tenant, new)
                if erased:
                    raise ErasedSubject(", ".join(r["subject"] for r in erased))
                keys = [new_key() for _ in new]
                await conn.execute(
                    "INSERT INTO subject_keys (tenant_id, subject, key) SELECT $1, s, k "
                    "FROM unnest($2::text[], $3::bytea[]) AS t(s, k)", tenant, new, keys)
                out.update(zip(new, keys))
            for s in missing:
                if s in out:
                    self._cache[(tenant, s)] = out[s]
        return out

    async def get(self, conn, tenant: str, subjects: set[str]) -> dict[str, bytes]:
        out = {s: self._cache[(tenant, s)] for s in subjects if (tenant, s) in self._cache}
        missing = [s for s in subjects if s not in out]
        if missing:
            rows = await conn.fetch(
                "SELECT subject, key FROM subject_keys WHERE tenant_id = $1 AND subject = ANY($2::text[])",
                tenant, missing)
            for r in rows:
                out[r["subject"]] = bytes(r["key"])
                self._cache[(tenant, r["subject"])] = bytes(r["key"])
        return out


class ErasedSubject(Exception):
    """Personal data cannot be written for a subject that was erased."""
