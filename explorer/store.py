"""Where saved work lives: a small key-value store with an age limit and a size bound.

A deployment picks the store with ``FRCNN_STORE``:

- ``sqlite:///path/to/store.sqlite3`` (the default, under ``~/.cache/frcnn-explorer``): an
  embedded database file. One server needs nothing more: it survives restarts, it is one file
  to back up, and SQLite's write-ahead log lets the server's threads (and a second process, a
  test or a backup) read while one writes.
- ``redis://host:6379/0``: for several app replicas behind a proxy, which must all see every
  student's project and class. Redis expires keys by itself (the age limit) and is what such a
  deployment already runs for sessions and queues.

Values are bytes in namespaces (``project``, ``blob``, ``share``, ``class``...), each entry
with a time to live; reading an entry does not extend it, writing does. SQLite also bounds the
total size (oldest entries out first); for Redis that is ``maxmemory`` with an LRU policy, the
deployer's setting.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

STORE_ENV = "FRCNN_STORE"
STORE_MB_ENV = "FRCNN_STORE_MB"
DEFAULT_PATH = Path.home() / ".cache" / "frcnn-explorer" / "store.sqlite3"
DAY = 24 * 3600.0
# Saved work is kept this long after its last change (a term).
MAX_AGE_S = 120 * DAY
# What an SQLite store may hold in all (a class of 100, each with a 25 MB photo and a 10 MB
# model, needs 3.5 GB); the oldest entries go first beyond it.
DEFAULT_STORE_MB = 8192


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message is for the server's operator."""


class Store(Protocol):
    def get(self, namespace: str, key: str) -> bytes | None: ...

    def put(self, namespace: str, key: str, value: bytes, ttl_s: float = MAX_AGE_S) -> None: ...

    def delete(self, namespace: str, key: str) -> None: ...

    def exists(self, namespace: str, key: str) -> bool: ...

    def mark(self, namespace: str, key: str, member: str, ttl_s: float) -> None: ...

    def count_marked(self, namespace: str, key: str) -> int: ...


class SqliteStore:
    """The store in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # With WAL, a commit survives the server being killed without an fsync of its own
            # (only a power cut can lose the last moments); every student's every rerun saves.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (namespace TEXT, key TEXT, value BLOB, "
                "size INTEGER, updated REAL, expires REAL, PRIMARY KEY (namespace, key))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS kv_updated ON kv (updated)")
            # The bound below sums sizes and drops expired entries on every write: from these
            # small indexes, not by reading every row past its project's bytes (35 ms a save
            # with a 56 MB store, measured; the sum now reads the index alone).
            self._db.execute("CREATE INDEX IF NOT EXISTS kv_size ON kv (size)")
            self._db.execute("CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS marks (namespace TEXT, key TEXT, member TEXT, "
                "expires REAL, PRIMARY KEY (namespace, key, member))"
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ? AND expires > ?",
                (namespace, key, time.time()),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def exists(self, namespace: str, key: str) -> bool:
        with self._transaction() as db:
            row = db.execute(
                "SELECT 1 FROM kv WHERE namespace = ? AND key = ? AND expires > ?",
                (namespace, key, time.time()),
            ).fetchone()
        return row is not None

    def put(self, namespace: str, key: str, value: bytes, ttl_s: float = MAX_AGE_S) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                (namespace, key, sqlite3.Binary(value), len(value), now, now + ttl_s),
            )
            self._bound(db, now)

    def delete(self, namespace: str, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))

    def mark(self, namespace: str, key: str, member: str, ttl_s: float) -> None:
        """Note ``member`` as present under ``key`` for ``ttl_s`` seconds (a heartbeat)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?)",
                (namespace, key, member, now + ttl_s),
            )
            db.execute("DELETE FROM marks WHERE expires <= ?", (now,))

    def count_marked(self, namespace: str, key: str) -> int:
        """How many members are marked present under ``key`` now."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM marks WHERE namespace = ? AND key = ? AND expires > ?",
                (namespace, key, time.time()),
            ).fetchone()
        return int(row[0])

    def _bound(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM kv WHERE expires <= ?", (now,))
        total = db.execute("SELECT COALESCE(SUM(size), 0) FROM kv").fetchone()[0]
        while total > self.max_bytes:
            oldest = db.execute(
                "SELECT namespace, key, size FROM kv ORDER BY updated LIMIT 1"
            ).fetchone()
            if oldest is None:
                break
            db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", oldest[:2])
            total -= oldest[2]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """The store in Redis, shared by every replica (see the module docstring)."""

    def __init__(self, url: str, prefix: str = "frcnn") -> None:
        import redis  # only a replicated deployment needs it

        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def _key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:{namespace}:{key}"

    def get(self, namespace: str, key: str) -> bytes | None:
        return self._redis.get(self._key(namespace, key))

    def exists(self, namespace: str, key: str) -> bool:
        return bool(self._redis.exists(self._key(namespace, key)))

    def put(self, namespace: str, key: str, value: bytes, ttl_s: float = MAX_AGE_S) -> None:
        self._redis.set(self._key(namespace, key), value, px=int(ttl_s * 1000))

    def delete(self, namespace: str, key: str) -> None:
        self._redis.delete(self._key(namespace, key))

    def mark(self, namespace: str, key: str, member: str, ttl_s: float) -> None:
        """A sorted set of members scored by when their mark expires."""
        name, now = self._key(namespace, key), time.time()
        pipe = self._redis.pipeline()
        pipe.zadd(name, {member: now + ttl_s})
        pipe.zremrangebyscore(name, "-inf", now)
        pipe.expire(name, int(ttl_s) + 60)
        pipe.execute()

    def count_marked(self, namespace: str, key: str) -> int:
        return int(self._redis.zcount(self._key(namespace, key), time.time(), "+inf"))


def open_store(url: str | None = None) -> Store:
    """The store named by ``url`` (default: ``$FRCNN_STORE``, else the SQLite default).

    Raises:
        StoreError: an unknown kind of store, or one that cannot be opened.
    """
    url = url or os.environ.get(STORE_ENV) or f"sqlite:///{DEFAULT_PATH}"
    parsed = urlparse(url)
    try:
        if parsed.scheme == "sqlite":
            path = url.removeprefix("sqlite:///")
            megabytes = int(os.environ.get(STORE_MB_ENV, "") or DEFAULT_STORE_MB)
            return SqliteStore(path, megabytes * 2**20)
        if parsed.scheme in ("redis", "rediss", "unix"):
            store = RedisStore(url)
            store._redis.ping()
            return store
    except Exception as exc:
        raise StoreError(f"the store {url} cannot be opened: {exc}") from exc
    raise StoreError(f"{STORE_ENV}={url}: use sqlite:///path or redis://host:port/db")
