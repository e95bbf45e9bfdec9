"""Application bundles (docs/bundles.md): find, read, verify and write
`vendor/<app>-<version>.tar.gz`."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from pathlib import Path

from builder.errors import UserError

FORMAT = 1
APPS = ("saleor", "dashboard", "storefront")
VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]*")  # the same rule as a role spec's bundle.version
MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
SUFFIX = ".tar.gz"
_CHUNK = 1 << 20


def vendor_dir(project) -> Path:
    """Where bundles live: $BUILDER_VENDOR, else vendor/ of the project."""
    return Path(os.environ.get("BUILDER_VENDOR") or project.root / "vendor")


@dataclasses.dataclass(frozen=True)
class Bundle:
    app: str
    version: str
    path: Path
    manifest: dict = dataclasses.field(hash=False)  # hashable by the other fields
    sha256: str

    @property
    def top(self) -> str:
        return f"{self.app}-{self.version}"

    @property
    def stand_in(self) -> bool:
        return bool(self.manifest.get("stand_in"))

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def as_json(self) -> dict:
        return {"app": self.app, "version": self.version, "path": str(self.path),
                "sha256": self.sha256, "size": self.size, "stand_in": self.stand_in,
                "created": self.manifest.get("created"), "source": self.manifest.get("source"),
                "runtime": self.manifest.get("runtime")}


# --- versions and file names -------------------------------------------------------------

def check_version(version: str, field: str = "--version") -> str:
    if not VERSION.fullmatch(version or ""):
        raise UserError(f"expected a release like 3.23.28, got {version!r}", field=field)
    return version


def version_key(version: str) -> tuple:
    """Order releases as versions: numeric parts as numbers (0.10.0 after 0.9.0), a
    pre-release (3.24.0-a.0, 3.24.0rc1) before its release, trailing zeros ignored."""
    match = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    release = [int(p) for p in match.group(0).split(".")] if match else []
    while release and release[-1] == 0:
        release.pop()
    rest = version[match.end():] if match else version
    rest = rest.split("+", 1)[0]  # local/build metadata does not order
    pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                for p in re.findall(r"[0-9]+|[A-Za-z]+", rest))
    return (tuple(release), 0 if pre else 1, pre)


def parse_name(name: str) -> tuple[str, str] | None:
    """(app, version) of a bundle file name, or None when it is not one."""
    if not name.endswith(SUFFIX):
        return None
    app, sep, version = name[:-len(SUFFIX)].partition("-")
    if not sep or app not in APPS or not VERSION.fullmatch(version):
        return None
    return app, version


def file_name(app: str, version: str) -> str:
    return f"{app}-{version}{SUFFIX}"


# --- reading -------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_cache: dict[tuple, Bundle] = {}
_verified: set[tuple] = set()


def _key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def _fail(path: Path, field: str | None, message: str):
    raise UserError(message, file=str(path), field=field)


def _check_manifest(path: Path, data, app: str, version: str) -> dict:
    if not isinstance(data, dict):
        _fail(path, MANIFEST, "expected a JSON object")
    expected = {"format": FORMAT, "app": app, "version": version}
    for key, want in expected.items():
        if key not in data:
            _fail(path, f"{MANIFEST}: {key}", "missing")
        if data[key] != want or type(data[key]) is not type(want):
            what = "this builder reads format" if key == "format" else "the file name says"
            _fail(path, f"{MANIFEST}: {key}", f"{data[key]!r}, but {what} {want!r}")
    for key, kind in (("created", str), ("source", str), ("runtime", dict), ("stand_in", bool)):
        if not isinstance(data.get(key), kind):
            _fail(path, f"{MANIFEST}: {key}",
                  f"expected a {kind.__name__}, got {data.get(key)!r}")
    runtime = data["runtime"]
    if app == "saleor":
        if runtime.get("python") not in ("bundled", "system"):
            _fail(path, f"{MANIFEST}: runtime.python",
                  f"expected bundled or system, got {runtime.get('python')!r}")
        if not re.fullmatch(r"3\.[0-9]+(\.[0-9]+)?", str(runtime.get("python_version"))):
            _fail(path, f"{MANIFEST}: runtime.python_version",
                  f"expected X.Y[.Z], got {runtime.get('python_version')!r}")
        if "schema" in runtime:
            dump = runtime["schema"]
            if not (isinstance(dump, dict) and all(
                    isinstance(dump.get(k), int) and not isinstance(dump.get(k), bool)
                    for k in ("postgres_major", "migrations"))):
                _fail(path, f"{MANIFEST}: runtime.schema",
                      f"expected postgres_major and migrations (numbers), got {dump!r}")
    if app == "storefront" and "node_runtime" in runtime:
        if runtime["node_runtime"] != "bundled":
            _fail(path, f"{MANIFEST}: runtime.node_runtime",
                  f"expected bundled (or no such key), got {runtime['node_runtime']!r}")
        if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", str(runtime.get("node_version"))):
            _fail(path, f"{MANIFEST}: runtime.node_version",
                  f"expected X.Y.Z, got {runtime.get('node_version')!r}")
    return data


# Files a manifest's runtime promises (verify() checks the tarball holds them).
def _promised(runtime: dict) -> list[str]:
    promised = ["node/bin/node"] if runtime.get("node_runtime") == "bundled" else []
    if "schema" in runtime:
        promised += ["schema/schema.json", "schema/schema.dump"]
    return promised


def read(path: Path) -> Bundle:
    """The bundle at path: its name, tar layout up to bundle.json, and manifest checked (not
    its file digests: see verify())."""
    path = Path(path)
    parsed = parse_name(path.name)
    if parsed is None:
        _fail(path, "file name", f"expected <app>-<version>{SUFFIX} with app one of "
              f"{', '.join(APPS)}")
    app, version = parsed
    try:
        key = _key(path)
    except OSError as exc:
        _fail(path, None, f"cannot read: {exc.strerror}")
    if key in _cache:
        return _cache[key]
    top = f"{app}-{version}"
    data = None
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.name == f"{top}/{MANIFEST}" and member.isreg():
                    raw = tar.extractfile(member).read()
                    try:
                        data = json.loads(raw)
                    except ValueError as exc:
                        _fail(path, MANIFEST, f"not JSON: {exc}")
                    break
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        _fail(path, None, f"not a readable gzip tar: {exc}")
    if data is None:
        _fail(path, MANIFEST, f"missing: expected {top}/{MANIFEST}")
    manifest = _check_manifest(path, data, app, version)
    bundle = Bundle(app=app, version=version, path=path, manifest=manifest,
                    sha256=sha256_file(path))
    _cache[key] = bundle
    return bundle


def available(vendor: Path) -> list[Bundle]:
    """Every bundle in vendor/, by app then version (oldest first)."""
    vendor = Path(vendor)
    if not vendor.is_dir():
        return []
    found = [read(p) for p in vendor.iterdir()
             if p.is_file() and parse_name(p.name) is not None]
    return sorted(found, key=lambda b: (APPS.index(b.app), version_key(b.version)))


def find(vendor: Path, app: str, version: str | None = None) -> Bundle | None:
    """The bundle of app at version, or its newest when version is None; None when absent."""
    vendor = Path(vendor)
    if version is not None:
        path = vendor / file_name(app, version)
        return read(path) if path.is_file() else None
    if not vendor.is_dir():
        return None
    versions = [parsed[1] for p in vendor.iterdir()
                if p.is_file() and (parsed := parse_name(p.name)) and parsed[0] == app]
    if not versions:
        return None
    return read(vendor / file_name(app, max(versions, key=version_key)))


def _member_problem(member: tarfile.TarInfo, top: str) -> str | None:
    name = member.name
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "a '..' component"
    if parts[0] != top:
        return f"outside {top}/"
    if member.issym():
        if member.linkname.startswith("/"):
            return f"a symlink to the absolute path {member.linkname}"
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if target != top and not target.startswith(top + "/"):
            return f"a symlink leaving {top}/ ({member.linkname})"
        return None
    if member.islnk():
        return "a hard link (only files, directories and symlinks are allowed)"
    if not (member.isreg() or member.isdir()):
        return "a device, FIFO or other special file"
    return None


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum` output: {relative path: hex digest}. ValueError on a malformed line."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not match:
            raise ValueError(f"line {number} is not `<sha256>  <path>`")
        digest, rel = match.groups()
        if rel in sums:
            raise ValueError(f"line {number}: {rel} listed twice")
        sums[rel] = digest
    return sums


def verify(path: Path) -> Bundle:
    """read() plus the whole tarball: every member safely under <top>/, SHA256SUMS listing
    every other regular file with the right digest. Remembered per file (path, inode, size,
    mtime) for the life of the process."""
    bundle = read(path)
    if _key(bundle.path) in _verified:
        return bundle
    top = bundle.top
    digests: dict[str, str] = {}
    seen: set[str] = set()
    sums_text = None
    try:
        with tarfile.open(bundle.path, mode="r|gz") as tar:
            for member in tar:
                problem = _member_problem(member, top)
                if problem:
                    _fail(bundle.path, member.name, problem)
                name = member.name.rstrip("/")
                if name in seen:
                    _fail(bundle.path, member.name, "appears twice in the tar")
                seen.add(name)
                if not member.isreg():
                    continue
                rel = name[len(top) + 1:]
                f = tar.extractfile(member)
                if rel == SUMS:
                    sums_text = f.read().decode("utf-8", "replace")
                    continue
                digest = hashlib.sha256()
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                digests[rel] = digest.hexdigest()
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        _fail(bundle.path, None, f"not a readable gzip tar: {exc}")
    if sums_text is None:
        _fail(bundle.path, SUMS, f"missing: expected {top}/{SUMS}")
    try:
        sums = parse_sums(sums_text)
    except ValueError as exc:
        _fail(bundle.path, SUMS, str(exc))
    for rel in _promised(bundle.manifest["runtime"]):
        if rel not in digests:
            _fail(bundle.path, f"{top}/{rel}", "missing: bundle.json's runtime names it")
    for rel in sorted(set(digests) | set(sums)):
        if rel not in sums:
            _fail(bundle.path, SUMS, f"does not list {rel}")
        if rel not in digests:
            _fail(bundle.path, SUMS, f"lists {rel}, which is not a file in the bundle")
        if sums[rel] != digests[rel]:
            _fail(bundle.path, f"{top}/{rel}", "sha256 does not match SHA256SUMS (modified?)")
    _verified.add(_key(bundle.path))
    return bundle


# --- writing -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Entry:
    rel: str          # relative to the payload directory, '/'-separated
    path: Path
    kind: str         # dir | file | symlink
    mode: int = 0o644
    link: str = ""


def _walk(root: Path, rel: str = "") -> list[_Entry]:
    """The payload below root in a fixed order (names sorted, parents before children)."""
    out: list[_Entry] = []
    with os.scandir(root) as it:
        names = sorted(it, key=lambda e: e.name)
    for entry in names:
        name = f"{rel}{entry.name}"
        if "\n" in name or "\\" in name:
            raise UserError("a file name with a newline or backslash cannot be listed in "
                            "SHA256SUMS", file=str(Path(entry.path)))
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            out.append(_Entry(name, Path(entry.path), "symlink", 0o777, os.readlink(entry.path)))
        elif stat.S_ISDIR(st.st_mode):
            out.append(_Entry(name, Path(entry.path), "dir", 0o755))
            out.extend(_walk(Path(entry.path), name + "/"))
        elif stat.S_ISREG(st.st_mode):
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            out.append(_Entry(name, Path(entry.path), "file", mode))
        else:
            raise UserError("not a regular file, directory or symlink",
                            file=str(Path(entry.path)))
    return out


def _tarinfo(name: str, kind: str, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def created_at(epoch: float | None = None) -> str:
    """An ISO-8601 UTC time: epoch, else $SOURCE_DATE_EPOCH, else now."""
    if epoch is None:
        env = os.environ.get("SOURCE_DATE_EPOCH")
        epoch = float(env) if env and env.isdigit() else datetime.datetime.now().timestamp()
    stamp = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def write(vendor: Path, app: str, version: str, payload_dir: Path, runtime: dict, source: str,
          stand_in: bool, *, created: str | None = None) -> Bundle:
    """Pack payload_dir as vendor/<app>-<version>.tar.gz with SHA256SUMS and bundle.json.
    Deterministic (sorted names, mtime 0, owner 0, gzip without name or time): the same
    payload and manifest give the same bytes. Written to a temporary file in vendor/ and
    renamed into place, so a failure or Ctrl-C leaves nothing half-written."""
    if app not in APPS:
        raise UserError(f"expected one of {', '.join(APPS)}, got {app!r}", field="app")
    check_version(version, "version")
    payload_dir = Path(payload_dir)
    top = f"{app}-{version}"
    entries = _walk(payload_dir)
    for entry in entries:
        if entry.rel in (MANIFEST, SUMS):
            raise UserError(f"the payload may not hold its own {entry.rel}",
                            file=str(entry.path))
        if entry.kind == "symlink":
            target = posixpath.normpath(posixpath.join(posixpath.dirname(entry.rel),
                                                       entry.link))
            if entry.link.startswith("/") or target == ".." or target.startswith("../"):
                raise UserError(f"symlink to {entry.link} leaves the bundle",
                                file=str(entry.path))
    manifest = {"format": FORMAT, "app": app, "version": version,
                "created": created or created_at(), "source": source,
                "runtime": dict(runtime), "stand_in": bool(stand_in)}
    # What read() would refuse is refused before anything is written.
    _check_manifest(Path(vendor) / file_name(app, version), manifest, app, version)
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
    lines = [f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST}"]
    for entry in entries:
        if entry.kind == "file":
            lines.append(f"{sha256_file(entry.path)}  {entry.rel}")
    lines.sort(key=lambda line: line[66:])
    sums_bytes = ("\n".join(lines) + "\n").encode()

    vendor = Path(vendor).absolute()
    made_vendor = not vendor.exists()
    vendor.mkdir(parents=True, exist_ok=True)
    final = vendor / file_name(app, version)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=vendor)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                               compresslevel=3) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_tarinfo(top, "dir", 0o755))
                for name, data in ((MANIFEST, manifest_bytes), (SUMS, sums_bytes)):
                    tar.addfile(_tarinfo(f"{top}/{name}", "file", 0o644, len(data)),
                                io.BytesIO(data))
                for entry in entries:
                    name = f"{top}/{entry.rel}"
                    if entry.kind == "file":
                        size = entry.path.stat().st_size
                        with entry.path.open("rb") as f:
                            tar.addfile(_tarinfo(name, "file", entry.mode, size), f)
                    else:
                        tar.addfile(_tarinfo(name, entry.kind, entry.mode, link=entry.link))
            raw.flush()
            os.fsync(raw.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if made_vendor:
            with contextlib.suppress(OSError):
                vendor.rmdir()
        raise
    return read(final)
