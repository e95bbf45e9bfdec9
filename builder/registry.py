"""The local artifact registry (SQLite): what was baked, from what, and whether it passed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    role           TEXT NOT NULL,
    version        TEXT NOT NULL,
    target         TEXT NOT NULL,
    content_key    TEXT NOT NULL,
    artifact       TEXT NOT NULL,      -- qcow2 directory, or region:ami-id list on AWS
    base           TEXT NOT NULL,      -- base identity (what it was built from)
    git_sha        TEXT NOT NULL,
    packer_version TEXT NOT NULL,
    tests_passed   INTEGER NOT NULL,
    tests          TEXT NOT NULL,      -- JSON: counts and the JUnit file
    timings        TEXT NOT NULL,      -- JSON: seconds per stage
    created_at     REAL NOT NULL,
    revoked        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS artifacts_key ON artifacts (role, target, content_key);
"""


@dataclasses.dataclass
class Artifact:
    role: str
    version: str
    target: str
    content_key: str
    artifact: str
    base: str
    git_sha: str
    packer_version: str
    tests_passed: bool
    tests: dict
    timings: dict
    created_at: float = dataclasses.field(default_factory=time.time)
    revoked: bool = False
    id: int | None = None

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


class Registry:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _db(self):
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    @staticmethod
    def _artifact(row: sqlite3.Row) -> Artifact:
        data = dict(row)
        data["tests"] = json.loads(data["tests"])
        data["timings"] = json.loads(data["timings"])
        data["tests_passed"] = bool(data["tests_passed"])
        data["revoked"] = bool(data["revoked"])
        return Artifact(**data)

    def record(self, art: Artifact) -> Artifact:
        data = art.as_json()
        data.pop("id")
        data["tests"] = json.dumps(data["tests"], sort_keys=True)
        data["timings"] = json.dumps(data["timings"], sort_keys=True)
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        with self._db() as db:
            cur = db.execute(f"INSERT INTO artifacts ({cols}) VALUES ({marks})",
                             list(data.values()))
            return dataclasses.replace(art, id=cur.lastrowid)

    def find_tested(self, role: str, target: str, content_key: str) -> Artifact | None:
        """The newest artifact with this key whose tests passed and that still exists."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM artifacts WHERE role=? AND target=? AND content_key=? "
                "AND tests_passed=1 AND revoked=0 ORDER BY id DESC", (role, target, content_key))
            for row in rows:
                art = self._artifact(row)
                if target != "qemu" or Path(art.artifact).is_dir():
                    return art
        return None

    def list(self, role: str | None = None, target: str | None = None) -> list[Artifact]:
        query, args = "SELECT * FROM artifacts WHERE 1=1", []
        if role:
            query, args = query + " AND role=?", [*args, role]
        if target:
            query, args = query + " AND target=?", [*args, target]
        with self._db() as db:
            return [self._artifact(r) for r in db.execute(query + " ORDER BY id", args)]
