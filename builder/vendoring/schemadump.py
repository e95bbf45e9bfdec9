"""The release's migrated, empty schema, made while vendoring: the bundle's own Python and
wheels in a scratch venv (as the image installs them), `manage.py migrate` against a
throwaway PostgreSQL (builder/vendoring/pgserver.py) at native speed, then `pg_dump -Fc`.

The bundle carries schema/schema.dump and schema/schema.json; at first boot an empty
database is restored from it instead of migrated (builder/agent/schema.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from builder.agent.schema import MANIFEST
from builder.errors import OperationError
from builder.progress import Progress
from builder.vendoring import common, pgserver
from builder.vendoring.common import step

DUMP = "schema.dump"
DIRECTORY = "schema"  # in the payload, beside app/, python/ and wheels/


def release_name(version: str) -> str:
    """The release the agent keys migrations on (builder/agent/roles/saleor_api.py)."""
    return f"saleor-{version}"


def make(payload: Path, version: str, python: Path, work: Path, progress: Progress,
         bindir: Path | None = None) -> dict:
    """Fill payload/schema/ from the payload's app and wheels, installed for `python` (the
    bundle's own, or a CPython of the image's X.Y); the runtime entry for bundle.json."""
    app_python = venv(payload, python, work / "schema-venv", progress)
    return migrated(payload / "app", app_python, version, payload / DIRECTORY, work, progress,
                    bindir)


def venv(payload: Path, python: Path, where: Path, progress: Progress) -> Path:
    """The payload's wheels installed into a new venv of `python`, as install-saleor.sh
    does in the image; the venv's python."""
    with step(progress, "venv", "the bundle's wheels in a scratch venv"):
        common.run([str(python), "-m", "venv", str(where)], what="venv", progress=progress)
        common.run([str(where / "bin" / "pip"), "install", "--quiet", "--no-index",
                    "--no-cache-dir", "--disable-pip-version-check",
                    "--find-links", str(payload / "wheels"),
                    "--requirement", str(payload / "requirements.txt")],
                   what="pip install (scratch venv)", progress=progress)
    return where / "bin" / "python"


def migrated(app: Path, python: Path, version: str, out: Path, work: Path,
             progress: Progress, bindir: Path | None = None) -> dict:
    """`python manage.py migrate` of `app` on a throwaway PostgreSQL, dumped into `out`
    with its manifest; the runtime entry for bundle.json."""
    app, python = app.resolve(), python.absolute()
    out.mkdir(parents=True)
    with pgserver.throwaway(bindir) as server:
        with step(progress, "schema-migrate",
                  f"manage.py migrate on a throwaway PostgreSQL {server.major}") as note:
            common.run([str(python), "manage.py", "migrate", "--no-input"],
                       what="manage.py migrate (schema dump)", progress=progress, cwd=app,
                       env=migrate_env(server.dsn, work, app))
            applied = _count(server, "SELECT count(*) FROM django_migrations")
            note["done"] = f"{applied} migrations"
        with step(progress, "schema-dump", "pg_dump -Fc") as note:
            common.run([server.tool("pg_dump"), "--format=custom", "--no-owner",
                        "--no-privileges", f"--file={out / DUMP}", f"--dbname={_no_pw(server)}"],
                       what="pg_dump", progress=progress, env=_pg_env(server))
            note["done"] = f"{(out / DUMP).stat().st_size / 1e6:.1f} MB"
    manifest = {"file": DUMP, "release": release_name(version),
                "postgres_major": server.major, "migrations": applied,
                "sha256": hashlib.sha256((out / DUMP).read_bytes()).hexdigest()}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {"postgres_major": server.major, "migrations": applied}


def _pg_env(server: pgserver.Server) -> dict:
    return dict(os.environ, PGPASSWORD=server.password)


def _no_pw(server: pgserver.Server) -> str:
    return f"postgresql://{server.user}@127.0.0.1:{server.port}/{server.database}"


def _count(server: pgserver.Server, query: str) -> int:
    done = subprocess.run([server.tool("psql"), "-X", "-tA", "-d", _no_pw(server), "-c", query],
                          capture_output=True, text=True, env=_pg_env(server), check=False)
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise OperationError(f"schema dump: {query}: {done.stderr.strip() or done.stdout}")
    return int(done.stdout.strip())


def migrate_env(dsn: str, work: Path, app: Path) -> dict:
    """What Saleor's settings need to run migrate: throwaway values made for this one
    command, never an instance's secrets (those arrive at boot)."""
    key = work / "schema-rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(key)], capture_output=True, check=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1", "DEBUG": "False",
            "SECRET_KEY": os.urandom(24).hex(),
            "RSA_PRIVATE_KEY": key.read_text(), "DATABASE_URL": dsn,
            "ALLOWED_HOSTS": "localhost", "ALLOWED_CLIENT_HOSTS": "localhost",
            "SEND_USAGE_TELEMETRY": "False",
            "PYTHONPATH": str(app)}
