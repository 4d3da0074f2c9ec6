"""Event types: pydantic models registered by name and schema version; old versions upcast on read.

    @event("UserCreated", version=2)
    class UserCreated(Event): ...

    @upcaster("UserCreated", from_version=1)
    def _v1_to_v2(data: dict) -> dict: ...

Personal fields (names, emails, ...) are declared per type in `personal`; the store seals them into
an encrypted envelope keyed by (tenant, subject) before hashing, see ledger/pii.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

_registry: dict[str, dict[int, type["Event"]]] = {}
_latest: dict[str, int] = {}
_upcasters: dict[tuple[str, int], Callable[[dict], dict]] = {}


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type_name: ClassVar[str]
    version: ClassVar[int]
    # names of fields holding personal data, sealed in the envelope; and which field names the subject
    personal: ClassVar[frozenset[str]] = frozenset()
    subject_field: ClassVar[str | None] = None

    def subject_id(self) -> str | None:
        return getattr(self, self.subject_field) if self.subject_field else None

    def payload(self) -> dict:
        return self.model_dump(mode="json")


def event(name: str, version: int = 1):
    def register(cls: type[Event]) -> type[Event]:
        versions = _registry.setdefault(name, {})
        if version in versions and versions[version] is not cls:
            raise ValueError(f"event {name} v{version} registered twice")
        for fname, f in cls.model_fields.items():
            # canonical bytes carry no floats (money and decimals travel as strings)
            if "float" in repr(f.annotation):
                raise TypeError(f"event {name}.{fname}: float fields are not allowed, use int/str/Decimal")
        cls.type_name = name
        cls.version = version
        versions[version] = cls
        _latest[name] = max(_latest.get(name, 0), version)
        return cls
    return register


def upcaster(name: str, from_version: int):
    def register(fn: Callable[[dict], dict]):
        _upcasters[(name, from_version)] = fn
        return fn
    return register


class UnknownEventType(LookupError):
    pass


def event_class(name: str, version: int | None = None) -> type[Event]:
    try:
        versions = _registry[name]
        return versions[version if version is not None else _latest[name]]
    except KeyError:
        raise UnknownEventType(f"{name} v{version}") from None


def upcast(name: str, version: int, data: dict) -> tuple[int, dict]:
    """Bring stored data of (name, version) up to the latest registered version."""
    latest = _latest.get(name, version)
    while version < latest:
        fn = _upcasters.get((name, version))
        if fn is None:
            raise UnknownEventType(f"no upcaster for {name} v{version}")
        data = fn(data)
        version += 1
    return version, data


def decode(name: str, version: int, data: dict) -> Event:
    version, data = upcast(name, version, data)
    return event_class(name, version).model_validate(data)


@dataclass
class NewEvent:
    """An event to append, with what the store needs beside the payload."""
    event: Event
    effective_at: datetime | None = None      # None: the recorded time
    idempotency_key: str | None = None        # natural key (e.g. scheduled expiry of an assignment)


@dataclass
class RecordedEvent:
    """An event as stored. `data` is decrypted when a key exists; erased subjects read as erased."""
    position: int
    tenant: str
    seq: int
    stream: str
    stream_version: int
    type: str
    schema_version: int
    data: dict
    metadata: dict
    effective_at: datetime
    recorded_at: datetime
    idempotency_key: str | None
    hash: bytes
    prev_hash: bytes
    erased: bool = False
    _decoded: Any = field(default=None, repr=False)

    def decoded(self) -> Event:
        if self._decoded is None:
            self._decoded = decode(self.type, self.schema_version, self.data)
        return self._decoded
