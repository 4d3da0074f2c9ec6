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


# Existing keys win; erased subjects get none (and are reported); the others get the fresh key.
# The final SELECT cannot see the CTE's inserted rows, hence the UNION with its RETURNING.
_GET_OR_CREATE = """
WITH req AS (
  SELECT s, k FROM unnest($2::text[], $3::bytea[]) AS t(s, k)
), old AS (
  SELECT subject, key FROM subject_keys WHERE tenant_id = $1 AND subject = ANY($2::text[])
), gone AS (
  SELECT subject FROM erasures WHERE tenant_id = $1 AND subject = ANY($2::text[])
), ins AS (
  INSERT INTO subject_keys (tenant_id, subject, key)
  SELECT $1, req.s, req.k FROM req
  WHERE req.s NOT IN (SELECT subject FROM old) AND req.s NOT IN (SELECT subject FROM gone)
  RETURNING subject, key
)
SELECT subject, key, false AS erased FROM old
UNION ALL SELECT subject, key, false FROM ins
UNION ALL SELECT subject, NULL, true FROM gone WHERE subject NOT IN (SELECT subject FROM old)
"""


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
        """Called under the tenant lock, so no other writer of this tenant races us. One round
        trip: existing keys, erased subjects and the insert of fresh keys in one statement."""
        out = {s: self._cache[(tenant, s)] for s in subjects if (tenant, s) in self._cache}
        missing = [s for s in subjects if s not in out]
        if missing:
            fresh = [new_key() for _ in missing]
            rows = await conn.fetch(_GET_OR_CREATE, tenant, missing, fresh)
            erased = [r["subject"] for r in rows if r["erased"]]
            if erased:
                # nothing was inserted for them; the caller's whole transaction is refused anyway
                raise ErasedSubject(", ".join(sorted(erased)))
            for r in rows:
                out[r["subject"]] = bytes(r["key"])
                self._cache[(tenant, r["subject"])] = bytes(r["key"])
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
