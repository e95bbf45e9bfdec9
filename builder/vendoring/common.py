"""What every `builder vendor APP` shares: getting the source (directory, tarball or URL),
copying trees, running tools with progress, and packing the bundle."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.vendoring import bundles

# Never part of a payload copied from a source tree.
IGNORED = (".git", ".hg", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache",
           ".tox", ".venv", ".DS_Store")
HEARTBEAT = 30.0  # seconds between "still running" lines of a long tool


@dataclasses.dataclass(frozen=True)
class Source:
    root: Path    # the tree: the directory given, or the one extracted from the archive
    label: str    # bundle.json "source": a path or URL, with the archive's sha256
    created: str  # bundle.json "created": $SOURCE_DATE_EPOCH, else the newest file in root

    @property
    def stand_in(self) -> bool:
        return (self.root / "STAND_IN").is_file()

    def has(self, *rels: str) -> bool:
        return all((self.root / rel).exists() for rel in rels)


# --- steps and tools --------------------------------------------------------------------------

@contextlib.contextmanager
def step(progress: Progress, name: str, detail: str = "") -> Iterator[dict]:
    """A named stage: a line when it starts, one with its duration (and what the body put in
    the yielded dict's "done") when it ends."""
    progress.stage(name, detail)
    started = time.monotonic()
    note: dict = {}
    yield note
    progress.finish()
    done = f"{note['done']}, " if note.get("done") else ""
    progress.say(f"{name}: {done}{time.monotonic() - started:.1f} s")


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(cmd: list[str], *, what: str, progress: Progress, cwd: Path | None = None,
        env: dict | None = None) -> str:
    """Run a tool to completion, its output kept (and shown, the last lines, if it fails);
    a progress line every HEARTBEAT seconds while it runs. OperationError on failure."""
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise OperationError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from exc
        started = time.monotonic()
        try:
            while True:
                try:
                    proc.wait(timeout=HEARTBEAT)
                    break
                except subprocess.TimeoutExpired:
                    progress.say(f"{what}: still running ({time.monotonic() - started:.0f} s)")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise OperationError(f"{what} failed (exit status {proc.returncode}): "
                             f"{' '.join(cmd)}\n{tail(output)}")
    return output


# --- sources --------------------------------------------------------------------------------

def _newest_mtime(root: Path) -> float:
    newest = 0.0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "node_modules")]
        for name in filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def _download(url: str, dest: Path, progress: Progress, default: bool) -> None:
    hint = ("; pass --source DIR|FILE (a copy made elsewhere) to vendor offline"
            if default else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            total = 0
            last = time.monotonic()
            while chunk := response.read(1 << 20):
                out.write(chunk)
                total += len(chunk)
                if time.monotonic() - last >= 10:
                    progress.say(f"download: {total / 1e6:.1f} MB")
                    last = time.monotonic()
    except urllib.error.HTTPError as exc:
        raise UserError(f"cannot download {url}: HTTP {exc.code} {exc.reason}{hint}",
                        field="--source") from exc
    except urllib.error.URLError as exc:
        raise UserError(f"cannot download {url}: {exc.reason}{hint}", field="--source") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot download {url}: {exc}{hint}", field="--source") from exc


def _extract(archive: Path, dest: Path, label: str) -> Path:
    """Extract a (compressed) tar safely; its single top directory if it has one."""
    if not hasattr(tarfile, "data_filter"):
        raise OperationError("extracting archives safely needs Python 3.11.4 or newer")
    dest.mkdir()
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{label} is not a readable tar archive: {exc}",
                        field="--source") from exc
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def fetch_source(spec: str | None, default_url: str, work: Path, progress: Progress) -> Source:
    """The source tree from --source (a directory, a .tar.gz or a URL; default_url when
    not given), extracted below work/ when it is an archive."""
    given = spec if spec is not None else default_url
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if re.match(r"[a-z][a-z0-9+.-]*://", given, re.I):
        if not given.lower().startswith(("https://", "http://")):
            raise UserError(f"expected a directory, a .tar.gz or an http(s) URL, got {given}",
                            field="--source")
        archive = work / "source.tar.gz"
        with step(progress, "download", given) as note:
            _download(given, archive, progress, default=spec is None)
            note["done"] = f"{archive.stat().st_size / 1e6:.1f} MB"
        digest = bundles.sha256_file(archive)
        with step(progress, "source", "extracting the archive"):
            root = _extract(archive, work / "source", given)
        label = f"{given} (sha256:{digest})"
    else:
        path = Path(given).expanduser()
        if path.is_dir():
            root = path.resolve()
            label = str(root)
        elif path.is_file():
            digest = bundles.sha256_file(path)
            with step(progress, "source", f"extracting {path.name}"):
                root = _extract(path, work / "source", str(path))
            label = f"{path.resolve()} (sha256:{digest})"
        else:
            raise UserError(f"no such directory or file: {given}", field="--source")
    epoch = float(sde) if sde and sde.isdigit() else _newest_mtime(root)
    return Source(root=root, label=label, created=bundles.created_at(epoch))


def copy_tree(src: Path, dest: Path, ignore: tuple[str, ...] = IGNORED,
              merge: bool = False) -> None:
    """Copy src to dest (symlinks kept as links), without VCS data and caches; merge: into
    an existing dest."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns(*ignore),
                    dirs_exist_ok=merge)


def relink_inside(root: Path) -> None:
    """Make absolute symlinks under root that point inside it relative (a tool's output
    may use either); links leading out of root are left for bundles.write() to refuse."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath, name)
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if not os.path.isabs(target):
                continue
            try:
                Path(target).resolve().relative_to(real_root)
            except ValueError:
                continue
            rel = os.path.relpath(Path(target).resolve(), link.parent.resolve())
            link.unlink()
            link.symlink_to(rel)


# --- the whole command ------------------------------------------------------------------------

def make(app: str, version: str, source: str | None, default_url: str, out: Path,
         build: Callable[[Source, Path, Path, Progress], dict], progress: Progress) -> dict:
    """Fetch the source, let build() fill the payload directory and return the runtime,
    pack the bundle into out/. Nothing lands in out/ unless every step succeeded."""
    bundles.check_version(version)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is not a directory", field="--dir")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"builder-vendor-{app}-") as scratch:
        work = Path(scratch)
        src = fetch_source(source, default_url.format(version=version), work, progress)
        payload = work / "payload"
        payload.mkdir()
        runtime = build(src, payload, work, progress)
        with step(progress, "pack", f"{bundles.file_name(app, version)}") as note:
            bundle = bundles.write(out, app, version, payload, runtime, src.label,
                                   src.stand_in, created=src.created)
            note["done"] = f"{bundle.size / 1e6:.1f} MB"
    progress.finish()
    return bundle.as_json() | {"seconds": round(time.monotonic() - started, 1),
                               "timings": progress.timings}
