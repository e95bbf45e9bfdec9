"""Restore or migrate, against a real PostgreSQL (Debian's, started here and always stopped):
the release's schema dumped while vendoring (builder/vendoring/schemadump.py) goes into an
empty database, a database that holds a schema is migrated, concurrent nodes do it once, and
the release is recorded either way (builder/agent/migrations.py, builder/agent/schema.py)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import psycopg
import pytest

from builder.agent import migrations, schema
from builder.agent.errors import AgentError
from builder.progress import Progress
from builder.vendoring import pgserver, schemadump

from .helpers import REPO

STANDIN = REPO / "tests" / "fixtures" / "saleor-standin"
RELEASE = schemadump.release_name("3.23.28")


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """The stand-in's migrated schema, made the way vendoring makes it."""
    work = tmp_path_factory.mktemp("schema")
    made = schemadump.migrated(STANDIN, Path(sys.executable), "3.23.28", work / "schema", work,
                               Progress(quiet=True))
    return work / "schema", made


@pytest.fixture
def server():
    with pgserver.throwaway() as running:
        yield running


def _migrate(dsn: str, work: Path) -> None:
    """The stand-in's own `manage.py migrate`, with the settings vendoring gives it."""
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input"],
                          cwd=STANDIN, env=schemadump.migrate_env(dsn, work, STANDIN),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _once(dsn: str, node: str, dump, run=None) -> dict:
    def refuse(before):
        raise AssertionError("migrated where the dump should have been restored")
    return migrations.once(dsn, "migrate", RELEASE, node, run or refuse, connect_timeout=10,
                           lock_timeout=60, dump=dump)


def _tables(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        return {
            "site": conn.execute("SELECT name FROM django_site").fetchall(),
            "migrations": conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0],
            "releases": conn.execute("SELECT release, node FROM builder_releases").fetchall(),
        }


def _repack(dist_info: Path, wheelhouse: Path) -> str:
    """An installed distribution of this test's venv back into a wheel (its RECORD lists its
    files): the schema venv then installs offline, from --find-links only, as in a bundle."""
    name, version = dist_info.name[: -len(".dist-info")].rsplit("-", 1)
    tag = next(line.split(": ", 1)[1] for line in (dist_info / "WHEEL").read_text().splitlines()
               if line.startswith("Tag: "))
    skipped = ("INSTALLER", "REQUESTED", "direct_url.json")
    with zipfile.ZipFile(wheelhouse / f"{name}-{version}-{tag}.whl", "w") as wheel:
        for row in csv.reader((dist_info / "RECORD").read_text().splitlines()):
            rel = row[0]
            path = dist_info.parent / rel
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith(skipped) \
                    or not path.is_file():
                continue
            wheel.write(path, rel)
    return f"{name.replace('_', '-')}=={version}"


def test_vendoring_migrates_with_the_bundles_own_python_and_wheels(tmp_path):
    """schemadump.make as `vendor saleor --schema-dump` runs it on a payload: a venv of the
    payload's Python, its wheels installed with --no-index, migrate, pg_dump."""
    payload = tmp_path / "payload"
    shutil.copytree(STANDIN, payload / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (payload / "python").symlink_to(sys.base_prefix)  # a CPython install, as bundled
    (payload / "wheels").mkdir()
    site = Path(psycopg.__file__).parents[1]
    pins = [_repack(next(site.glob(f"{dist}-*.dist-info")), payload / "wheels")
            for dist in ("psycopg", "psycopg_binary", "typing_extensions")]
    (payload / "requirements.txt").write_text("\n".join(pins) + "\n")
    made = schemadump.make(payload, "3.23.28", payload / "python" / "bin" / "python3",
                           tmp_path / "work", Progress(quiet=True))
    assert made["migrations"] == 5
    assert schema.Dump.find(payload / "schema").release == RELEASE
    assert not list((payload / "app").rglob("__pycache__"))  # nothing added to the bundle


def test_the_vendored_dump_records_its_release_server_and_migrations(dumped):
    where, made = dumped
    manifest = json.loads((where / schema.MANIFEST).read_text())
    assert manifest["release"] == RELEASE and manifest["migrations"] == 5 == made["migrations"]
    assert manifest["postgres_major"] == made["postgres_major"] >= 15
    found = schema.Dump.find(where)
    assert found.path.is_file() and found.release == RELEASE
    assert schema.Dump.find(where / "absent") is None


def test_an_empty_database_is_restored_and_the_release_recorded(dumped, server, tmp_path):
    dump = schema.Dump.find(dumped[0])
    first = _once(server.dsn, "saleor-api-1", dump)
    assert first["ran"] and first["how"] == "restored", first
    assert _tables(server.dsn) == {"site": [("Saleor e-commerce",)], "migrations": 5,
                                   "releases": [(RELEASE, "saleor-api-1")]}
    again = _once(server.dsn, "saleor-api-2", dump)
    assert again["ran"] is False and again["by"] == "saleor-api-1"
    # What the restore left is what migrate expects: nothing more to apply.
    _migrate(server.dsn, tmp_path)
    assert _tables(server.dsn)["migrations"] == 5


def test_a_database_that_holds_a_schema_is_migrated(dumped, server, tmp_path):
    _migrate(server.dsn, tmp_path)  # an earlier release's shop
    with psycopg.connect(server.dsn) as conn:
        conn.execute("UPDATE django_site SET name = 'My shop'")
    ran = []
    result = _once(server.dsn, "saleor-api-1", schema.Dump.find(dumped[0]),
                   run=lambda before: ran.append((before, _migrate(server.dsn, tmp_path))))
    assert result["how"] == "migrated" and "already holds" in result["why"]
    assert ran == [(5, None)] and result["applied_before"] == 5  # run() learns where it was
    assert _tables(server.dsn)["site"] == [("My shop",)]


def test_nodes_booting_together_restore_once(dumped, server):
    dump = schema.Dump.find(dumped[0])
    results: dict[str, dict] = {}
    start = threading.Barrier(3)

    def boot(node: str) -> None:
        start.wait()
        results[node] = _once(server.dsn, node, dump)

    threads = [threading.Thread(target=boot, args=(f"saleor-api-{i}",)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ran = [node for node, result in results.items() if result["ran"]]
    assert len(results) == 3 and len(ran) == 1, results
    assert {r["by"] for r in results.values()} == set(ran)
    assert _tables(server.dsn)["releases"] == [(RELEASE, ran[0])]


@pytest.mark.parametrize("change, why", [
    ({"release": "saleor-3.22.0"}, "the dump is of release saleor-3.22.0"),
    ({"postgres_major": 99}, "newer than the server's"),
])
def test_a_dump_that_does_not_fit_is_not_restored(dumped, server, tmp_path, change, why):
    manifest = json.loads((dumped[0] / schema.MANIFEST).read_text()) | change
    (tmp_path / schema.MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / manifest["file"]).write_bytes((dumped[0] / manifest["file"]).read_bytes())
    result = _once(server.dsn, "saleor-api-1", schema.Dump.find(tmp_path),
                   run=lambda before: _migrate(server.dsn, tmp_path))
    assert result["how"] == "migrated" and why in result["why"]
    assert _tables(server.dsn)["migrations"] == 5


def test_a_restore_that_fails_leaves_the_database_empty_for_the_next_node(dumped, server,
                                                                          tmp_path):
    manifest = json.loads((dumped[0] / schema.MANIFEST).read_text())
    (tmp_path / schema.MANIFEST).write_text(json.dumps(manifest))
    whole = (dumped[0] / manifest["file"]).read_bytes()
    (tmp_path / manifest["file"]).write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(AgentError, match="pg_restore .* exited"):
        _once(server.dsn, "saleor-api-1", schema.Dump.find(tmp_path))
    with psycopg.connect(server.dsn) as conn:
        assert schema.empty(conn)
        assert conn.execute("SELECT count(*) FROM builder_releases").fetchone()[0] == 0
    assert _once(server.dsn, "saleor-api-2", schema.Dump.find(dumped[0]))["how"] == "restored"


def test_the_restore_keeps_the_password_off_its_command_line(dumped, server, monkeypatch):
    seen = []
    real = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: seen.append(argv) or
                        real(argv, **kw))
    schema.restore(server.dsn, schema.Dump.find(dumped[0]).path, 60)
    assert seen and server.password not in " ".join(seen[0])


def test_an_unreadable_manifest_is_one_line(tmp_path):
    (tmp_path / schema.MANIFEST).write_text("{not json")
    with pytest.raises(AgentError, match="unreadable schema dump manifest"):
        schema.Dump.find(tmp_path)


def test_no_postgresql_binaries_is_one_line_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.setattr(pgserver, "DEBIAN_BINARIES", tmp_path)
    with pytest.raises(pgserver.UserError, match="no PostgreSQL server under") as info:
        pgserver.find_bindir()
    assert info.value.field == "--postgres-bin"
