"""A persistent cache of judge replies in one SQLite file.

Keys are SHA-256 digests of everything that determines a reply (see :func:`cache_key`);
values are the raw text of replies that passed validation. The validator runs again on a
hit, so a reply that a newer validator rejects is asked again instead of trusted. Safe to
share between threads (one connection behind a lock) and between processes (SQLite's own
locking, WAL journal, a generous busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ReplyCache:
    """``get(key) -> str | None`` and ``put(key, reply)`` backed by SQLite at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # some file systems refuse WAL; the default journal works
            pass
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies ("
            " key TEXT PRIMARY KEY, namespace TEXT, model TEXT, reply TEXT NOT NULL, created REAL)"
        )

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, reply: str, *, namespace: str = "", model: str = "") -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, namespace, model, reply, created) VALUES (?, ?, ?, ?, ?)",
                (key, namespace, model, reply, time.time()),
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM replies WHERE key = ?", (key,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
