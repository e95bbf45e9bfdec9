"""The newest real (not stand-in) Saleor bundle in vendor/, run natively on this machine:
its venv installed from its wheels, its first release restored from the bundled schema dump
and, on a second throwaway PostgreSQL, migrated from nothing (the ratio is what a first boot
saves), uvicorn as saleor-api.service starts it answering GraphQL `{ shop { name } }`, and
the memory of each process (RSS and PSS: uvicorn's workers share pages with their parent),
which sizes the image's workers. Native numbers: a TCG guest runs the same code 5-20x slower,
but needs the same memory.

Needs a bundle made with `builder vendor saleor --schema-dump` (runtime bundled) and
PostgreSQL's Debian packages. No goal: it measures.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from builder.agent import schema
from builder.bench.common import Options, machine, table
from builder.errors import OperationError
from builder.progress import Progress
from builder.vendoring import bundles, pgserver, schemadump

DESCRIPTION = ("the real Saleor bundle natively: restore vs migrate of a first release, "
               "first GraphQL answer, memory per process (no goal)")
QUERY = b'{"query": "{ shop { name } }"}'
ANSWER_TIMEOUT = 300.0
QUERIES = 20  # answered before memory is read, so the workers have imported what they serve


def _bundle(options: Options | None = None) -> bundles.Bundle | None:
    from builder.spec.project import find_project

    project = options.project if options else find_project()
    try:
        found = bundles.find(bundles.vendor_dir(project), "saleor")
    except Exception:  # noqa: BLE001 - any unreadable vendor dir means "none here"
        return None
    if found is None or found.stand_in or "schema" not in found.manifest["runtime"] \
            or found.manifest["runtime"].get("python") != "bundled":
        return None
    return found


def available() -> str | None:
    try:
        pgserver.find_bindir()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    if _bundle() is None:
        return ("no real saleor bundle with a schema dump and a bundled python in vendor/ "
                "(builder vendor saleor --python-from DIR --schema-dump)")
    return None


def run(options: Options) -> dict:
    bundle = _bundle(options)
    progress = Progress(prefix="realapi: ")
    with tempfile.TemporaryDirectory(prefix="builder-realapi-") as scratch:
        work = Path(scratch)
        with tarfile.open(bundle.path) as tar:
            tar.extractall(work, filter="data")
        payload = work / bundle.top
        started = time.monotonic()
        python = schemadump.venv(payload, payload / "python" / "bin" / "python3",
                                 work / "venv", progress)
        install = time.monotonic() - started
        dump = schema.Dump.find(payload / schemadump.DIRECTORY)
        app = payload / "app"
        with pgserver.throwaway() as restored, pgserver.throwaway() as migrated:
            started = time.monotonic()
            schema.restore(restored.dsn, dump.path, 600)
            restore = time.monotonic() - started
            started = time.monotonic()
            progress.say("migrate from nothing (the path a first boot without the dump takes)")
            _check([str(python), "manage.py", "migrate", "--no-input"], app,
                   schemadump.migrate_env(migrated.dsn, work, app), "migrate")
            migrate = time.monotonic() - started
            served = _serve(python, app, schemadump.migrate_env(restored.dsn, work, app), work,
                            progress)
    data = {
        "bundle": bundle.path.name, "migrations": dump.migrations,
        "postgres_major": restored.major,
        "seconds": {"venv_install": round(install, 1), "restore": round(restore, 2),
                    "migrate": round(migrate, 1), "first_answer": served["first_answer"]},
        "restore_over_migrate": round(restore / migrate, 4),
        "shop_name": served["shop_name"], "memory_mib": served["memory_mib"],
        "machine": machine(), "goal_met": None,
    }
    _print(data)
    return data


def _check(argv: list[str], cwd: Path, env: dict, what: str) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise OperationError(f"{what} exited {done.returncode}: {' | '.join(tail)}")


def _serve(python: Path, app: Path, env: dict, work: Path, progress: Progress) -> dict:
    """uvicorn with saleor-api.service's arguments and a Celery worker as saleor-worker
    runs it (an in-memory broker); the first answer's time and each process's memory."""
    port = pgserver.free_port()
    venv_bin = python.parent
    env = dict(env, CELERY_BROKER_URL="memory://", CACHE_URL="locmem://")
    commands = {
        "uvicorn": [str(venv_bin / "uvicorn"), "saleor.asgi:application", "--host",
                    "127.0.0.1", "--port", str(port), "--workers", "2", "--lifespan", "auto"],
        "celery": [str(venv_bin / "celery"), "--app", "saleor.celeryconf:app", "worker",
                   "--concurrency", "1", "--loglevel=info"],
    }
    with contextlib.ExitStack() as stack:
        procs = {}
        for label, argv in commands.items():
            log = stack.enter_context(open(work / f"{label}.log", "wb"))
            procs[label] = subprocess.Popen(argv, cwd=app, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
            stack.callback(_stop, procs[label])
        started = time.monotonic()
        name = _first_answer(port, procs["uvicorn"], work / "uvicorn.log", started)
        first = round(time.monotonic() - started, 1)
        progress.say(f"GraphQL answered after {first} s: shop {name!r}")
        for _ in range(QUERIES):
            _ask(port)
        time.sleep(5)  # the Celery worker has forked its child by then
        memory = {label: _memory(proc.pid) for label, proc in procs.items()}
        return {"first_answer": first, "shop_name": name, "memory_mib": memory}


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ask(port: int) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql/", data=QUERY,
                                     headers={"Content-Type": "application/json",
                                              "Host": "localhost"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _first_answer(port: int, proc: subprocess.Popen, log: Path, started: float) -> str:
    while time.monotonic() - started < ANSWER_TIMEOUT:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise OperationError(f"uvicorn exited {proc.returncode}: {' | '.join(tail)}")
        try:
            return _ask(port)["data"]["shop"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(1)
    raise OperationError(f"no GraphQL answer in {ANSWER_TIMEOUT:.0f} s (log: {log})")


def _memory(pid: int) -> dict:
    """RSS and PSS (MiB) of a process and each of its children."""
    out = {}
    for one in [pid, *_children(pid)]:
        fields = {}
        try:
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    fields[key.lower()] = round(int(rest.split()[0]) / 1024, 1)
            name = Path(f"/proc/{one}/comm").read_text().strip()
        except OSError:
            continue
        out[f"{name}[{one}]"] = fields
    return out


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _print(data: dict) -> None:
    s = data["seconds"]
    print(table(["step", "seconds"], [["venv install (native)", s["venv_install"]],
                                       ["restore the schema dump", s["restore"]],
                                       [f"migrate {data['migrations']} migrations", s["migrate"]],
                                       ["uvicorn to first GraphQL answer", s["first_answer"]]]))
    rows = [[f"{group}: {name}", m.get("rss"), m.get("pss")]
            for group, procs in data["memory_mib"].items() for name, m in procs.items()]
    print(table(["process", "RSS MiB", "PSS MiB"], rows))
