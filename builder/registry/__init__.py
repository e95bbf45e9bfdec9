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
            found = [self._artifact(row) for row in rows]
        pruned = self.pruned() if target != "qemu" and found else {}
        for art in found:
            if target == "qemu" and Path(art.artifact).is_dir():
                return art
            if target != "qemu" and not set(image_ids(art.artifact).values()) & set(pruned):
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

    # ------------------------------------------------------------------ release lifecycle
    # Channels, promotion history, ancestry, revocation, prunes and rollouts live in their
    # own tables (created on first use) so the artifacts table stays as bake code expects.

    @contextlib.contextmanager
    def _release_db(self):
        with self._db() as db:
            db.executescript(RELEASE_SCHEMA)
            yield db

    def get(self, artifact_id: int) -> Artifact | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM artifacts WHERE id=?", (artifact_id,)).fetchone()
        return self._artifact(row) if row else None

    def find_image(self, image_id: str) -> Artifact | None:
        """The artifact one of whose region:image entries is `image_id` (an AMI id)."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM artifacts WHERE artifact LIKE ? ORDER BY id DESC",
                              (f"%{image_id}%",)).fetchall()
        for row in rows:
            art = self._artifact(row)
            if image_id in image_ids(art.artifact).values():
                return art
        return None

    def find_version(self, role: str, target: str, version: str) -> list[Artifact]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM artifacts WHERE role=? AND target=? AND version=? "
                              "ORDER BY id DESC", (role, target, version)).fetchall()
        return [self._artifact(r) for r in rows]

    def set_parent(self, child_id: int, parent_id: int) -> None:
        with self._release_db() as db:
            db.execute("INSERT OR REPLACE INTO lineage (child_id, parent_id) VALUES (?, ?)",
                       (child_id, parent_id))

    def parent(self, artifact_id: int) -> int | None:
        with self._release_db() as db:
            row = db.execute("SELECT parent_id FROM lineage WHERE child_id=?",
                             (artifact_id,)).fetchone()
        return row[0] if row else None

    def descendants(self, artifact_id: int) -> list[int]:
        with self._release_db() as db:
            rows = db.execute(
                "WITH RECURSIVE d(id) AS (SELECT child_id FROM lineage WHERE parent_id=? "
                "UNION SELECT l.child_id FROM lineage l JOIN d ON l.parent_id = d.id) "
                "SELECT id FROM d ORDER BY id", (artifact_id,)).fetchall()
        return [r[0] for r in rows]

    def revoke(self, artifact_id: int, reason: str) -> list[int]:
        """Revoke an artifact and flag every descendant; returns the ids newly revoked."""
        changed = []
        now = time.time()
        targets = [(artifact_id, None)] + [(d, artifact_id) for d in
                                           self.descendants(artifact_id)]
        with self._release_db() as db:
            for target_id, inherited in targets:
                cur = db.execute("UPDATE artifacts SET revoked=1 WHERE id=? AND revoked=0",
                                 (target_id,))
                if cur.rowcount:
                    changed.append(target_id)
                    db.execute("INSERT OR REPLACE INTO revocations (artifact_id, reason, "
                               "inherited_from, at) VALUES (?, ?, ?, ?)",
                               (target_id, reason, inherited, now))
        return changed

    def revocation(self, artifact_id: int) -> dict | None:
        with self._release_db() as db:
            row = db.execute("SELECT * FROM revocations WHERE artifact_id=?",
                             (artifact_id,)).fetchone()
        return dict(row) if row else None

    def set_channel(self, role: str, target: str, channel: str, artifact_id: int,
                    action: str, note: str = "") -> int | None:
        """Point a channel at an artifact and record it; returns the previous artifact id."""
        now = time.time()
        with self._release_db() as db:
            row = db.execute("SELECT artifact_id FROM channels WHERE role=? AND target=? AND "
                             "channel=?", (role, target, channel)).fetchone()
            previous = row[0] if row else None
            db.execute("INSERT OR REPLACE INTO channels (role, target, channel, artifact_id, "
                       "updated_at) VALUES (?, ?, ?, ?, ?)",
                       (role, target, channel, artifact_id, now))
            db.execute("INSERT INTO channel_history (role, target, channel, artifact_id, "
                       "previous_id, action, note, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (role, target, channel, artifact_id, previous, action, note, now))
        return previous

    def channel(self, role: str, target: str, channel: str) -> int | None:
        with self._release_db() as db:
            row = db.execute("SELECT artifact_id FROM channels WHERE role=? AND target=? AND "
                             "channel=?", (role, target, channel)).fetchone()
        return row[0] if row else None

    def channels(self, role: str | None = None, target: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM channels WHERE 1=1", []
        if role:
            query, args = query + " AND role=?", [*args, role]
        if target:
            query, args = query + " AND target=?", [*args, target]
        with self._release_db() as db:
            return [dict(r) for r in db.execute(query + " ORDER BY role, channel", args)]

    def channel_history(self, role: str, target: str,
                        channel: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM channel_history WHERE role=? AND target=?", [role, target]
        if channel:
            query, args = query + " AND channel=?", [*args, channel]
        with self._release_db() as db:
            return [dict(r) for r in db.execute(query + " ORDER BY id", args)]

    def mark_pruned(self, artifact_id: int | None, image: str, region: str) -> None:
        with self._release_db() as db:
            db.execute("INSERT OR REPLACE INTO pruned (image, region, artifact_id, at) "
                       "VALUES (?, ?, ?, ?)", (image, region, artifact_id, time.time()))

    def pruned(self) -> dict[str, dict]:
        with self._release_db() as db:
            return {r["image"]: dict(r) for r in db.execute("SELECT * FROM pruned")}

    def record_rollout(self, **fields) -> int:
        fields.setdefault("started_at", time.time())
        fields["detail"] = json.dumps(fields.get("detail") or {}, sort_keys=True)
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self._release_db() as db:
            cur = db.execute(f"INSERT INTO rollouts ({cols}) VALUES ({marks})",
                             list(fields.values()))
            return cur.lastrowid

    def finish_rollout(self, rollout_id: int, status: str, detail: dict | None = None) -> None:
        with self._release_db() as db:
            db.execute("UPDATE rollouts SET status=?, finished_at=?, detail=? WHERE id=?",
                       (status, time.time(), json.dumps(detail or {}, sort_keys=True),
                        rollout_id))

    def rollouts(self, role: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM rollouts", []
        if role:
            query, args = query + " WHERE role=?", [role]
        with self._release_db() as db:
            rows = [dict(r) for r in db.execute(query + " ORDER BY id", args)]
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows


RELEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    role        TEXT NOT NULL,
    target      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id),
    updated_at  REAL NOT NULL,
    PRIMARY KEY (role, target, channel)
);
CREATE TABLE IF NOT EXISTS channel_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    role        TEXT NOT NULL,
    target      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    artifact_id INTEGER NOT NULL,
    previous_id INTEGER,
    action      TEXT NOT NULL,     -- promote | rollback
    note        TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lineage (
    child_id    INTEGER PRIMARY KEY,
    parent_id   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    artifact_id    INTEGER PRIMARY KEY,
    reason         TEXT NOT NULL,
    inherited_from INTEGER,        -- the revoked ancestor, when flagged through lineage
    at             REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pruned (
    image       TEXT PRIMARY KEY,
    region      TEXT NOT NULL,
    artifact_id INTEGER,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    role        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    asg         TEXT NOT NULL,
    image       TEXT NOT NULL,
    artifact_id INTEGER,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL
);
"""

REGISTRY_FILE = "registry.db"  # the name bake.registry_for() uses


def default_path(state: Path) -> Path:
    """Where the registry lives under a project's state directory (BUILDER_STATE)."""
    return state / REGISTRY_FILE


def image_ids(artifact: str) -> dict[str, str]:
    """`us-east-1:ami-1,eu-west-1:ami-2` (a Packer manifest artifact_id) as {region: image}."""
    out = {}
    for part in artifact.split(","):
        region, sep, image = part.strip().partition(":")
        if sep and region and image:
            out[region] = image
    return out
