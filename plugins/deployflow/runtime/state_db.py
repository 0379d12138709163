"""The runtime's state in SQLite: what was registered, created and deployed survives a restart."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version TEXT NOT NULL, path TEXT NOT NULL, content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    endpoint TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (endpoint, name));
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class Store:
    """Rows of JSON documents keyed by name; writes are committed at once.

    The database holds every endpoint key: it and its ``-wal``/``-shm`` files are owner-only (SQLite
    gives those the database file's mode, so the file is created 0600 before SQLite opens it).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        path.chmod(0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.chmod(0o600)

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def add_model(self, name: str, version: str, path: str, content_hash: str, created_at: str) -> None:
        self._run("INSERT INTO models VALUES (?, ?, ?, ?, ?)", (name, version, path, content_hash, created_at))

    def models(self, name: str | None = None) -> list[dict[str, str]]:
        sql = "SELECT name, version, path, content_hash, created_at FROM models"
        rows = self._run(sql + " WHERE name = ?", (name,)) if name else self._run(sql)
        keys = ("name", "version", "path", "content_hash", "created_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def put_endpoint(self, name: str, body: dict[str, Any]) -> None:
        self._run("INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (name, json.dumps(body)))

    def delete_endpoint(self, name: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM deployments WHERE endpoint = ?", (name,))
            self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))
            self._db.execute("COMMIT")

    def endpoints(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(body) for name, body in self._run("SELECT name, body FROM endpoints")}

    def put_deployment(self, endpoint: str, name: str, body: dict[str, Any]) -> None:
        self._run("INSERT OR REPLACE INTO deployments VALUES (?, ?, ?)", (endpoint, name, json.dumps(body)))

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self._run("DELETE FROM deployments WHERE endpoint = ? AND name = ?", (endpoint, name))

    def deployments(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._run("SELECT endpoint, name, body FROM deployments")
        return [(endpoint, name, json.loads(body)) for endpoint, name, body in rows]

    def put_job(self, job_id: str, body: dict[str, Any]) -> None:
        """A batch job's document; it never holds the storage connection string."""
        self._run("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (job_id, json.dumps(body)))

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(body) for (body,) in self._run("SELECT body FROM jobs ORDER BY rowid")]

    def close(self) -> None:
        with self._lock:
            self._db.close()
