"""The SQLite store that keeps every browser's project: bounded by bytes, and a save that stays
cheap however full the store is (every student's every rerun saves)."""

from __future__ import annotations

import time
from pathlib import Path

from explorer.store import SqliteStore


def test_the_byte_bound_drops_the_oldest_and_expired_entries(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", 10_000)
    for i in range(5):
        store.put("project", f"p{i}", bytes(3000))
        time.sleep(0.01)
    kept = [i for i in range(5) if store.exists("project", f"p{i}")]
    assert kept == [2, 3, 4]  # 9,000 bytes: the two oldest went
    store.put("project", "short", bytes(10), ttl_s=0.05)
    time.sleep(0.1)
    store.put("project", "p5", bytes(10))
    assert not store.exists("project", "short") and store.get("project", "p5") == bytes(10)


def test_a_save_reads_the_size_and_expiry_indexes_not_every_project(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", 2**30)
    plan = " ".join(
        str(row) for row in store._db.execute("EXPLAIN QUERY PLAN SELECT SUM(size) FROM kv")
    )
    assert "COVERING INDEX kv_size" in plan, plan
    plan = " ".join(
        str(row)
        for row in store._db.execute("EXPLAIN QUERY PLAN DELETE FROM kv WHERE expires <= 0")
    )
    assert "INDEX kv_expires" in plan, plan
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_an_old_store_gets_the_indexes_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = SqliteStore(path, 2**30)
    old.put("project", "a", b"x" * 100)
    old._db.execute("DROP INDEX kv_size")
    old._db.execute("DROP INDEX kv_expires")
    old.close()
    reopened = SqliteStore(path, 2**30)
    names = {row[0] for row in reopened._db.execute("SELECT name FROM sqlite_master")}
    assert {"kv_size", "kv_expires"} <= names
    assert reopened.get("project", "a") == b"x" * 100
