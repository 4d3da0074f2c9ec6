"""Configuration from the environment, read once per call (tests change it)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_ROLE = "seatledger_app"


@dataclass(frozen=True)
class Settings:
    database_url: str | None      # SEATLEDGER_DATABASE_URL: the PostgreSQL to use (None: embedded)
    migrate_url: str | None       # SEATLEDGER_MIGRATE_URL: the schema owner (default: database_url)
    data_dir: Path                # SEATLEDGER_DATA_DIR: embedded PostgreSQL data and service keys
    database: str                 # SEATLEDGER_DATABASE: database name on the embedded server
    batch_max: int                # SEATLEDGER_BATCH_MAX: commands per group commit


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "seatledger"


def settings() -> Settings:
    env = os.environ
    return Settings(
        database_url=env.get("SEATLEDGER_DATABASE_URL") or None,
        migrate_url=env.get("SEATLEDGER_MIGRATE_URL") or None,
        data_dir=Path(env.get("SEATLEDGER_DATA_DIR") or _default_data_dir()),
        database=env.get("SEATLEDGER_DATABASE", "seatledger"),
        batch_max=int(env.get("SEATLEDGER_BATCH_MAX", "256")),
    )
