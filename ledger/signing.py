"""The service's Ed25519 key, which signs tenant heads (sequence + hash) for auditors.

The key comes from `SEATLEDGER_SIGNING_KEY` (path to an unencrypted PKCS#8 PEM private key) or is
generated once in `<data dir>/keys/audit-ed25519.pem` (mode 0600, directory 0700). Concurrent first
starts race safely: the file is created exclusively and the loser reads the winner's key.

What is signed: the canonical JSON (UTF-8, keys sorted, no whitespace) of
{"hash", "seq", "signed_at", "tenant"} — `head_message` below; `scripts/verify_export.py` rebuilds
the same bytes with the standard library. `key_id` is the first 16 hex digits of
sha256(raw 32-byte public key), so an auditor can tell which key signed a head.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .config import settings

ENV_KEY = "SEATLEDGER_SIGNING_KEY"
KEY_FILE = Path("keys") / "audit-ed25519.pem"


def head_message(tenant: str, seq: int, hash_hex: str, signed_at: str) -> bytes:
    return json.dumps({"tenant": tenant, "seq": seq, "hash": hash_hex, "signed_at": signed_at},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def _load(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_or_create_private_key(path: Path | None = None) -> Ed25519PrivateKey:
    if path is None:
        env = os.environ.get(ENV_KEY)
        if env:
            return _load(Path(env))
        path = settings().data_dir / KEY_FILE
    if path.exists():
        return _load(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _pem(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)        # atomic and exclusive: never replaces a key another process made
    except FileExistsError:
        key = _load(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


@dataclass
class SignedHead:
    tenant: str
    seq: int
    hash: str
    signed_at: str
    key_id: str
    signature: str     # base64

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Signer:
    def __init__(self, private: Ed25519PrivateKey):
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def load(cls, path: Path | None = None) -> "Signer":
        return cls(load_or_create_private_key(path))

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign_head(self, tenant: str, seq: int, hash_hex: str, signed_at: datetime | None = None) -> SignedHead:
        at = (signed_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        at_s = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        sig = self.private.sign(head_message(tenant, seq, hash_hex, at_s))
        return SignedHead(tenant, seq, hash_hex, at_s, self.key_id, base64.b64encode(sig).decode("ascii"))


def verify_head(public_pem: str | bytes, head: dict) -> bool:
    """True if `head` (as served by /v1/<tenant>/audit/head) carries a valid signature of that key."""
    pub = serialization.load_pem_public_key(public_pem.encode() if isinstance(public_pem, str) else public_pem)
    if not isinstance(pub, Ed25519PublicKey):
        return False
    try:
        pub.verify(base64.b64decode(head["signature"], validate=True),
                   head_message(head["tenant"], head["seq"], head["hash"], head["signed_at"]))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return head.get("key_id", key_id_of(pub)) == key_id_of(pub)
