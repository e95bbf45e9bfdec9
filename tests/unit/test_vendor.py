"""`builder vendor` and builder.vendoring.bundles (docs/bundles.md) on tiny sources made here: no
network (wheels come from a wheelhouse written by the test, pip runs with --no-index)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from builder.errors import OperationError, UserError
from builder.vendoring import bundles, pins

from .helpers import REPO

EPOCH_ZIP = (1980, 1, 1, 0, 0, 0)


# --- helpers ----------------------------------------------------------------------------------

def make_wheel(wheelhouse: Path, name: str, version: str) -> Path:
    """A minimal valid pure-Python wheel of one module, written by hand."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wheel = wheelhouse / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, EPOCH_ZIP), data)
    return wheel


def make_saleor(root: Path, requirements: str | None = "tinypkg==1.0\n") -> Path:
    for rel, text in {"manage.py": "print('manage')\n", "saleor/__init__.py": "",
                      "saleor/asgi.py": "application = None\n",
                      "saleor/celeryconf.py": "app = None\n", "STAND_IN": "test\n",
                      "saleor/__pycache__/x.cpython-312.pyc": "cache",
                      ".git/HEAD": "ref: refs/heads/main\n"}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return root


def vendor_cli(args: list[str], cwd: Path, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """`builder vendor ARGS...` as from a shell."""
    full = dict(os.environ)
    full.pop("SOURCE_DATE_EPOCH", None)
    full["BUILDER_STATE"] = str(cwd / "state")
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "builder", "vendor", *args], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path, "r:gz") as tar:
        return tar.extractfile(name).read()


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("builder:")]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(house, "tinypkg", "1.0")
    make_wheel(house, "devpkg", "2.0")
    return house


@pytest.fixture(scope="module")
def saleor_bundle(tmp_path_factory, wheelhouse):
    """One saleor bundle made through the CLI: (work dir, source dir, result JSON)."""
    work = tmp_path_factory.mktemp("saleor")
    src = make_saleor(work / "src")
    result = vendor_cli(["saleor", "--version", "0.1.0", "--source", str(src),
                         "--runtime", "system", "--find-links", str(wheelhouse), "--no-index",
                         "--dir", str(work / "vendor"), "--json"], work)
    assert result.returncode == 0, result.stderr
    return work, src, json.loads(result.stdout)


# --- saleor through the CLI -------------------------------------------------------------------

def test_saleor_bundle_layout_manifest_and_sums(saleor_bundle):
    work, src, made = saleor_bundle
    path = work / "vendor" / "saleor-0.1.0.tar.gz"
    assert made["path"] == str(path) and made["stand_in"] is True
    bundle = bundles.verify(path)
    assert (bundle.app, bundle.version, bundle.top) == ("saleor", "0.1.0", "saleor-0.1.0")
    assert bundle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == made["sha256"]
    assert bundle.manifest["format"] == 1 and bundle.stand_in
    assert bundle.manifest["runtime"] == {"python": "system", "python_version": "3.13"}
    assert bundle.manifest["source"] == str(src.resolve())
    assert bundle.manifest["created"].endswith("Z")

    infos = members(path)
    names = [m.name for m in infos]
    assert names[:3] == ["saleor-0.1.0", "saleor-0.1.0/bundle.json", "saleor-0.1.0/SHA256SUMS"]
    assert all(n == "saleor-0.1.0" or n.startswith("saleor-0.1.0/") for n in names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname and not m.gname
               for m in infos)
    for rel in ("app/manage.py", "app/saleor/asgi.py", "app/saleor/celeryconf.py",
                "requirements.txt", "wheels/tinypkg-1.0-py3-none-any.whl"):
        assert f"saleor-0.1.0/{rel}" in names, rel
    assert not any("__pycache__" in n or "/.git" in n for n in names)
    assert not any("/python/" in n for n in names)  # runtime system: no interpreter

    listed = bundles.parse_sums(read_member(path, "saleor-0.1.0/SHA256SUMS").decode())
    regular = {m.name.split("/", 1)[1] for m in infos if m.isreg()} - {"SHA256SUMS"}
    assert set(listed) == regular
    for rel, digest in listed.items():
        assert hashlib.sha256(read_member(path, f"saleor-0.1.0/{rel}")).hexdigest() == digest
    pins_text = read_member(path, "saleor-0.1.0/requirements.txt").decode()
    assert "tinypkg==1.0" in pins_text.splitlines()


def test_same_source_gives_the_same_bytes(saleor_bundle, wheelhouse):
    work, src, made = saleor_bundle
    again = vendor_cli(["saleor", "--version", "0.1.0", "--source", str(src),
                        "--runtime", "system", "--find-links", str(wheelhouse), "--no-index",
                        "--dir", str(work / "again"), "--json"], work)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sha256"] == made["sha256"]
    assert (work / "again" / "saleor-0.1.0.tar.gz").read_bytes() == \
        (work / "vendor" / "saleor-0.1.0.tar.gz").read_bytes()
    assert sorted(p.name for p in (work / "again").iterdir()) == ["saleor-0.1.0.tar.gz"]


def test_saleor_from_a_tarball_with_one_top_directory(tmp_path, wheelhouse):
    src = make_saleor(tmp_path / "saleor-9.9.9")
    archive = tmp_path / "saleor-9.9.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="saleor-9.9.9")
    result = vendor_cli(["saleor", "--version", "9.9.9", "--source", str(archive),
                         "--runtime", "system", "--python-version", "3.12",
                         "--find-links", str(wheelhouse), "--no-index",
                         "--dir", str(tmp_path / "vendor"), "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    bundle = bundles.verify(tmp_path / "vendor" / "saleor-9.9.9.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert bundle.manifest["source"] == f"{archive.resolve()} (sha256:{digest})"
    assert bundle.manifest["runtime"]["python_version"] == "3.12"
    assert "saleor-9.9.9/app/manage.py" in [m.name for m in members(bundle.path)]


def test_saleor_from_uv_lock_keeps_the_dev_group(tmp_path, wheelhouse):
    from builder.vendoring.saleor import find_uv

    try:
        find_uv()
    except OperationError:
        pytest.skip("uv is not installed (pip install 'builder[vendor]')")
    src = make_saleor(tmp_path / "src", requirements=None)
    (src / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.12"\n'
        'dependencies = ["tinypkg==1.0"]\n\n[dependency-groups]\ndev = ["devpkg==2.0"]\n')
    (src / "uv.lock").write_text(UV_LOCK)
    result = vendor_cli(["saleor", "--version", "1.0.0", "--source", str(src),
                         "--runtime", "system", "--find-links", str(wheelhouse), "--no-index",
                         "--dir", str(tmp_path / "vendor")], tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "vendor" / "saleor-1.0.0.tar.gz"
    bundles.verify(path)
    names = [m.name for m in members(path)]
    assert "saleor-1.0.0/wheels/devpkg-2.0-py3-none-any.whl" in names
    text = read_member(path, "saleor-1.0.0/requirements.txt").decode()
    assert "devpkg==2.0" in text and "tinypkg==1.0" in text and "demo" not in text


def _locked(name: str, version: str) -> str:
    return (f'[[package]]\nname = "{name}"\nversion = "{version}"\n'
            f'source = {{ registry = "wheels" }}\n'
            f'wheels = [\n    {{ path = "{name}-{version}-py3-none-any.whl" }},\n]\n')


UV_LOCK = """version = 1
revision = 3
requires-python = ">=3.12"

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "tinypkg" }]

[package.dev-dependencies]
dev = [{ name = "devpkg" }]

[package.metadata]
requires-dist = [{ name = "tinypkg", specifier = "==1.0" }]

[package.metadata.requires-dev]
dev = [{ name = "devpkg", specifier = "==2.0" }]

""" + _locked("devpkg", "2.0") + "\n" + _locked("tinypkg", "1.0")


def _bad_cases(tmp: Path, wheelhouse: Path) -> dict[str, tuple[list[str], str]]:
    good = make_saleor(tmp / "good")
    empty = tmp / "empty"
    empty.mkdir()
    unpinned = make_saleor(tmp / "unpinned", "tinypkg>=1.0\n")
    no_reqs = make_saleor(tmp / "noreqs", requirements=None)
    offline = ["--runtime", "system", "--find-links", str(wheelhouse), "--no-index"]
    return {
        "unknown app": (["flask", "--version", "1.0"], "APP"),
        "bad version": (["saleor", "--version", "v1.0/x", "--source", str(good), *offline],
                        "--version"),
        "missing source": (["saleor", "--version", "1.0", "--source", str(tmp / "nope"),
                            *offline], "--source"),
        "not saleor": (["saleor", "--version", "1.0", "--source", str(empty), *offline],
                       "--source"),
        "no requirements": (["saleor", "--version", "1.0", "--source", str(no_reqs), *offline],
                            "--source"),
        "unpinned": (["saleor", "--version", "1.0", "--source", str(unpinned), *offline],
                     "requirements.txt:1"),
        "unreachable url": (["saleor", "--version", "1.0", "--source",
                             "http://127.0.0.1:9/saleor-1.0.tar.gz", *offline], "--source"),
        "no-index alone": (["saleor", "--version", "1.0", "--source", str(good),
                            "--runtime", "system", "--no-index"], "--no-index"),
        "python-from with system": (["saleor", "--version", "1.0", "--source", str(good),
                                     "--python-from", str(empty), *offline], "--python-from"),
        "bad python version": (["saleor", "--version", "1.0", "--source", str(good),
                                "--python-version", "3", *offline], "--python-version"),
        "schema dump with system": (["saleor", "--version", "1.0", "--source", str(good),
                                     "--schema-dump", *offline], "--schema-dump"),
        "schema dump on another python": (["saleor", "--version", "1.0", "--source",
                                           str(good), "--schema-dump", "--build-python",
                                           sys.executable, "--python-version", "3.9",
                                           *offline], "--build-python"),
        "postgres-bin alone": (["saleor", "--version", "1.0", "--source", str(good),
                                "--postgres-bin", str(empty), *offline], "--postgres-bin"),
        "postgres-bin without initdb": (["saleor", "--version", "1.0", "--source", str(good),
                                         "--find-links", str(wheelhouse), "--no-index",
                                         "--schema-dump", "--postgres-bin", str(empty)],
                                        "--postgres-bin"),
        "dashboard not built": (["dashboard", "--version", "1.0", "--source", str(empty)],
                                "--source"),
        "storefront needs api url": (["storefront", "--version", "1.0", "--source",
                                      str(_checkout(tmp / "sf"))], "--api-url"),
    }


def _checkout(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "package.json").write_text('{"name": "storefront"}\n')
    return root


BAD = ["unknown app", "bad version", "missing source", "not saleor", "no requirements",
       "unpinned", "unreachable url", "no-index alone", "python-from with system",
       "bad python version", "schema dump with system", "schema dump on another python",
       "postgres-bin alone",
       "postgres-bin without initdb", "dashboard not built", "storefront needs api url"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, wheelhouse, case):
    args, named = _bad_cases(tmp_path, wheelhouse)[case]
    out = tmp_path / "vendor"
    result = vendor_cli([*args, "--dir", str(out)] if case != "unknown app" else args,
                        tmp_path, env={"BUILDER_VENDOR": str(out)})
    assert result.returncode == 2, result.stderr
    lines = errors(result)
    assert len(lines) == 1 and lines[0].startswith("builder: error: "), result.stderr
    assert named in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_existing_out_keeps_nothing_from_a_failed_run(tmp_path, wheelhouse):
    out = tmp_path / "vendor"
    out.mkdir()
    src = make_saleor(tmp_path / "src", "missing==1.0\n")  # not in the wheelhouse
    result = vendor_cli(["saleor", "--version", "1.0", "--source", str(src), "--runtime",
                         "system", "--find-links", str(wheelhouse), "--no-index",
                         "--dir", str(out)], tmp_path)
    assert result.returncode == 1, result.stderr
    assert errors(result)[0].startswith("builder: failed: pip download failed")
    assert list(out.iterdir()) == []


# --- dashboard and storefront, prebuilt --------------------------------------------------------

def test_dashboard_from_a_built_dist(tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<script>window.__SALEOR_CONFIG__ = {\n'
                                     '  API_URL: "http://localhost:8000/graphql/",\n};</script>')
    (dist / "assets" / "app.js").write_text("console.log(1)\n")
    result = vendor_cli(["dashboard", "--version", "3.23.27", "--source", str(dist),
                         "--dir", str(tmp_path / "vendor"), "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    bundle = bundles.verify(tmp_path / "vendor" / "dashboard-3.23.27.tar.gz")
    assert bundle.manifest["runtime"] == {} and not bundle.stand_in
    names = [m.name for m in members(bundle.path)]
    assert "dashboard-3.23.27/dist/index.html" in names
    assert "dashboard-3.23.27/dist/assets/app.js" in names


def test_dashboard_without_api_url_placeholder_is_refused(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html></html>")
    result = vendor_cli(["dashboard", "--version", "1.0.0", "--source", str(dist),
                         "--dir", str(tmp_path / "vendor")], tmp_path)
    assert result.returncode == 2
    assert "index.html" in errors(result)[0] and "API_URL" in errors(result)[0]
    assert not (tmp_path / "vendor").exists()


def test_storefront_from_a_standalone_build_keeps_symlinks(tmp_path):
    app = tmp_path / "standalone"
    for rel in ("server.js", ".next/static/chunk.js", "public/favicon.ico",
                "node_modules/.pnpm/next@16/node_modules/next/index.js"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(rel)
    (app / "node_modules" / "next").symlink_to(".pnpm/next@16/node_modules/next")
    result = vendor_cli(["storefront", "--version", "0.1.0", "--source", str(app),
                         "--dir", str(tmp_path / "vendor")], tmp_path)
    assert result.returncode == 0, result.stderr
    bundle = bundles.verify(tmp_path / "vendor" / "storefront-0.1.0.tar.gz")
    assert bundle.manifest["runtime"] == {"node": ">=24"}
    links = {m.name: m.linkname for m in members(bundle.path) if m.issym()}
    assert links == {"storefront-0.1.0/app/node_modules/next": ".pnpm/next@16/node_modules/next"}
    listed = bundles.parse_sums(read_member(bundle.path, "storefront-0.1.0/SHA256SUMS").decode())
    assert "app/server.js" in listed and "app/node_modules/next" not in listed


def test_list_shows_bundles_by_app_and_version(saleor_bundle):
    work, _, _ = saleor_bundle
    result = vendor_cli(["list", "--json", "--dir", str(work / "vendor")], work)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["bundles"]
    assert [(b["app"], b["version"]) for b in listed] == [("saleor", "0.1.0")]
    verified = vendor_cli(["verify", "--dir", str(work / "vendor")], work)
    assert verified.returncode == 0 and verified.stdout.startswith("ok  "), verified.stderr


# --- bundles: find, read, verify, write ----------------------------------------------------

def write_bundle(vendor: Path, tmp: Path, app: str = "saleor", version: str = "1.0.0",
                 files: dict[str, str] | None = None) -> bundles.Bundle:
    payload = tmp / f"payload-{app}-{version}"
    for rel, text in (files or {"app/manage.py": "x\n", "wheels/a.whl": "w"}).items():
        (payload / rel).parent.mkdir(parents=True, exist_ok=True)
        (payload / rel).write_text(text)
    runtime = {"python": "system", "python_version": "3.13"} if app == "saleor" else {}
    return bundles.write(vendor, app, version, payload, runtime, "test", stand_in=True,
                         created="2026-01-01T00:00:00Z")


def test_find_picks_the_newest_version_numerically(tmp_path):
    vendor = tmp_path / "vendor"
    for version in ("0.9.0", "0.10.0", "0.10.0rc1", "0.2.0"):
        write_bundle(vendor, tmp_path, version=version)
    write_bundle(vendor, tmp_path, app="dashboard", version="5.0.0")
    assert bundles.find(vendor, "saleor").version == "0.10.0"
    assert bundles.find(vendor, "saleor", "0.9.0").version == "0.9.0"
    assert bundles.find(vendor, "saleor", "7.0.0") is None
    assert bundles.find(vendor, "storefront") is None
    assert bundles.find(tmp_path / "absent", "saleor") is None
    assert [(b.app, b.version) for b in bundles.available(vendor)] == [
        ("saleor", "0.2.0"), ("saleor", "0.9.0"), ("saleor", "0.10.0rc1"),
        ("saleor", "0.10.0"), ("dashboard", "5.0.0")]


def test_version_order():
    ordered = ["1.0.0-a.0", "1.0.0rc1", "1.0.0", "1.0.1", "1.2", "1.10.0", "3.23.28"]
    assert sorted(reversed(ordered), key=bundles.version_key) == ordered
    assert bundles.version_key("3.23") == bundles.version_key("3.23.0")


def test_write_is_deterministic_and_leaves_no_temporary_files(tmp_path):
    first = write_bundle(tmp_path / "a", tmp_path)
    second = write_bundle(tmp_path / "b", tmp_path)
    assert first.sha256 == second.sha256
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["saleor-1.0.0.tar.gz"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = tarfile.TarFile.addfile

    def interrupt(self, info, fileobj=None, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, info, fileobj, **kw)

    monkeypatch.setattr(tarfile.TarFile, "addfile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(tmp_path / "new", tmp_path)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        write_bundle(existing, tmp_path)
    assert list(existing.iterdir()) == []


def test_write_refuses_a_symlink_leaving_the_payload(tmp_path):
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "evil").symlink_to("../../etc/passwd")
    with pytest.raises(UserError, match="leaves the bundle"):
        bundles.write(tmp_path / "vendor", "dashboard", "1.0", payload, {}, "t", False)
    assert not (tmp_path / "vendor").exists()


def _repack(src: Path, dest: Path, change) -> Path:
    """A copy of the bundle at src with its members passed through change(info, data)
    -> list of (info, data) (data None for non-files)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(src, "r:gz") as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isreg() else None
            out.extend(change(info, data))
    with tarfile.open(dest, "w:gz") as tar:
        for info, data in out:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _edit(name: str, data: bytes):
    def change(info, old):
        return [(info, data if info.name == name else old)]
    return change


def _add(info: tarfile.TarInfo, data: bytes | None = None):
    def change(existing, old):
        extra = [(info, data)] if existing.name.endswith("/SHA256SUMS") else []
        return [(existing, old), *extra]
    return change


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


TAMPERING = {
    "modified file": (_edit("saleor-1.0.0/app/manage.py", b"evil\n"), "app/manage.py"),
    "unlisted file": (_add(_file("saleor-1.0.0/app/extra.py"), b"x"), "does not list"),
    "listed file missing": (lambda i, d: [] if i.name.endswith("wheels/a.whl") else [(i, d)],
                            "lists wheels/a.whl"),
    "outside top": (_add(_file("other/x"), b"x"), "outside saleor-1.0.0/"),
    "dotdot": (_add(_file("saleor-1.0.0/../x"), b"x"), "'..'"),
    "absolute": (_add(_file("/etc/x"), b"x"), "absolute"),
    "symlink out": (_add(_link("saleor-1.0.0/app/l", "../../../etc/passwd")), "symlink"),
    "absolute symlink": (_add(_link("saleor-1.0.0/app/l", "/etc/passwd")), "absolute"),
    "device": (_add(_link("saleor-1.0.0/app/dev", "", tarfile.CHRTYPE)), "device"),
    "hard link": (_add(_link("saleor-1.0.0/app/h", "saleor-1.0.0/app/manage.py",
                             tarfile.LNKTYPE)), "hard link"),
    "bad sums": (_edit("saleor-1.0.0/SHA256SUMS", b"nonsense\n"), "SHA256SUMS"),
    "duplicate member": (_add(_file("saleor-1.0.0/app/manage.py"), b"x\n"), "twice"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_refuses_a_tampered_bundle(tmp_path, case):
    good = write_bundle(tmp_path / "good", tmp_path)
    change, message = TAMPERING[case]
    bad = _repack(good.path, tmp_path / "bad" / good.path.name, change)
    with pytest.raises(UserError) as caught:
        bundles.verify(bad)
    text = caught.value.render()
    assert str(bad) in text and message in text, text
    bundles.read(bad)  # the manifest alone is still fine


def test_read_checks_the_manifest_against_the_file_name(tmp_path):
    good = write_bundle(tmp_path / "good", tmp_path)
    manifest = json.loads(read_member(good.path, "saleor-1.0.0/bundle.json"))
    for key, value, field in (("version", "2.0.0", "bundle.json: version"),
                              ("format", 2, "bundle.json: format"),
                              ("runtime", {"python": "conda"}, "runtime.python"),
                              ("runtime", {"python": "system", "python_version": "3.13",
                                           "schema": {"postgres_major": "17"}},
                               "runtime.schema"),
                              ("stand_in", "yes", "bundle.json: stand_in")):
        data = json.dumps(manifest | {key: value}).encode()
        bad = _repack(good.path, tmp_path / key / good.path.name,
                      _edit("saleor-1.0.0/bundle.json", data))
        with pytest.raises(UserError, match=field):
            bundles.read(bad)
    renamed = tmp_path / "renamed" / "saleor-1.0.1.tar.gz"
    renamed.parent.mkdir()
    renamed.write_bytes(good.path.read_bytes())
    with pytest.raises(UserError, match="missing"):
        bundles.read(renamed)
    junk = tmp_path / "junk" / "saleor-1.0.0.tar.gz"
    junk.parent.mkdir()
    junk.write_bytes(b"not a tarball")
    with pytest.raises(UserError, match="not a readable gzip tar"):
        bundles.read(junk)


def test_vendor_dir_follows_builder_vendor(monkeypatch, tmp_path):
    from builder.spec.project import Project

    project = Project(root=REPO, images=REPO / "images")
    monkeypatch.delenv("BUILDER_VENDOR", raising=False)
    assert bundles.vendor_dir(project) == REPO / "vendor"
    monkeypatch.setenv("BUILDER_VENDOR", str(tmp_path))
    assert bundles.vendor_dir(project) == tmp_path


# --- pinned requirements ------------------------------------------------------------------------

REQUIREMENTS = """\
# This file was autogenerated by uv via the following command:
#    uv export --frozen --no-emit-project
amqp==5.3.1 ; platform_python_implementation != 'PyPy' \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via kombu
celery[redis,sqs]==5.6.3 --hash=sha256:cc
old==1.0 ; python_version < '3.13' --hash=sha256:dd
new==2.0 ; python_version >= '3.13' --hash=sha256:ee
winonly==1.0 ; sys_platform == 'win32' --hash=sha256:ff
"""


def test_pins_parse_markers_and_hashes():
    parsed = pins.parse(REQUIREMENTS, "requirements.txt")
    assert [(p.name, p.version, p.line) for p in parsed] == [
        ("amqp", "5.3.1", 3), ("celery", "5.6.3", 7), ("old", "1.0", 8), ("new", "2.0", 9),
        ("winonly", "1.0", 10)]
    assert parsed[0].hashes == ("sha256:aa", "sha256:bb")
    for version, expected in (("3.12", ["amqp", "celery", "old"]),
                              ("3.13", ["amqp", "celery", "new"])):
        chosen = pins.applicable(parsed, pins.target_environment(version), "r")
        assert [p.name for p in chosen] == expected
    rendered = pins.render(parsed, {("old", "1.0"): ("sha256:11",)}, "header")
    assert "old==1.0 ; python_version < '3.13' --hash=sha256:11" in rendered
    assert rendered.startswith("# header\n")


@pytest.mark.parametrize("text, line", [
    ("django>=5\n", 1), ("ok==1.0\n-e .\n", 2), ("ok==1.0\nx==1.*\n", 2),
    ("pkg @ https://example.invalid/p.whl\n", 1), ("ok==1.0 --index-url x\n", 1),
    ("a==1 --hash=md5:00\n", 1),
])
def test_pins_refuse_anything_not_pinned(text, line):
    with pytest.raises(UserError) as caught:
        pins.parse(text, "requirements.txt")
    assert caught.value.line == line and caught.value.file == "requirements.txt"


def test_pins_need_hashes_on_all_or_none():
    parsed = pins.parse("a==1 --hash=sha256:aa\nb==2\n", "r.txt")
    with pytest.raises(UserError, match="b has no --hash"):
        pins.check_hashes(parsed, "r.txt")


# --- runtime bundled: the CPython (stand-ins for uv and for a relocatable install) ----------

FAKE_PYTHON = """#!/bin/sh
# Answers builder's probe like a relocatable CPython {version} would.
prefix=$(cd "$(dirname "$0")/.." && pwd)
{fixed}
echo "{{\\"version\\": \\"{version}\\", \\"platform\\": \\"linux-x86_64\\", \\
\\"implementation\\": \\"cpython\\", \\"prefix\\": \\"$prefix\\"}}"
"""


def fake_python(root: Path, version: str = "3.12.9", fixed_prefix: str | None = None) -> Path:
    python = root / "bin" / "python3"
    python.parent.mkdir(parents=True)
    fixed = f"prefix={fixed_prefix}" if fixed_prefix else ""
    python.write_text(FAKE_PYTHON.format(version=version, fixed=fixed))
    python.chmod(0o755)
    (root / "lib" / "python3.12").mkdir(parents=True)
    (root / "lib" / "python3.12" / "os.py").write_text("# stdlib\n")
    return root


def fake_uv(tmp: Path, fail: bool = False) -> Path:
    """A `uv` that 'installs' a fake CPython (or fails the way an offline download does)."""
    uv = tmp / "fake-uv"
    source = fake_python(tmp / "fake-cpython")
    if fail:
        body = ('echo "error: Failed to download https://github.com/astral-sh/'
                'python-build-standalone/cpython-3.12.9-install_only.tar.gz" >&2; exit 2')
    else:
        body = ('[ "$1 $2" = "python install" ] || exit 9\n'
                'dir="$5"; mkdir -p "$dir"\n'
                f'cp -r {source} "$dir/cpython-3.12.9-linux-x86_64-gnu"\n'
                'ln -s cpython-3.12.9-linux-x86_64-gnu "$dir/cpython-3.12-linux-x86_64-gnu"')
    uv.write_text(f"#!/bin/sh\n{body}\n")
    uv.chmod(0o755)
    return uv


def _bundled(tmp: Path, wheelhouse: Path, extra: list[str], env: dict | None = None):
    src = make_saleor(tmp / "src")
    return vendor_cli(["saleor", "--version", "2.0.0", "--source", str(src), *extra,
                       "--find-links", str(wheelhouse), "--no-index",
                       "--dir", str(tmp / "vendor")], tmp, env)


def test_bundled_python_from_uv(tmp_path, wheelhouse):
    result = _bundled(tmp_path, wheelhouse, [], {"BUILDER_UV": str(fake_uv(tmp_path))})
    assert result.returncode == 0, result.stderr
    bundle = bundles.verify(tmp_path / "vendor" / "saleor-2.0.0.tar.gz")
    assert bundle.manifest["runtime"] == {"python": "bundled", "python_version": "3.12.9"}
    names = [m.name for m in members(bundle.path)]
    assert "saleor-2.0.0/python/bin/python3" in names
    assert "saleor-2.0.0/python/lib/python3.12/os.py" in names
    mode = next(m.mode for m in members(bundle.path) if m.name.endswith("python/bin/python3"))
    assert mode == 0o755


def test_bundled_python_download_failure_says_what_to_do_offline(tmp_path, wheelhouse):
    result = _bundled(tmp_path, wheelhouse, [],
                      {"BUILDER_UV": str(fake_uv(tmp_path, fail=True))})
    assert result.returncode == 1
    (line,) = errors(result)
    assert "https://github.com/astral-sh/python-build-standalone/" in line
    assert "--python-from" in line and "--runtime system" in line
    assert not (tmp_path / "vendor").exists()


def test_bundled_python_from_a_directory(tmp_path, wheelhouse):
    python = fake_python(tmp_path / "cpython", "3.12.4")
    result = _bundled(tmp_path, wheelhouse, ["--python-from", str(python)])
    assert result.returncode == 0, result.stderr
    bundle = bundles.read(tmp_path / "vendor" / "saleor-2.0.0.tar.gz")
    assert bundle.manifest["runtime"]["python_version"] == "3.12.4"


@pytest.mark.parametrize("version, fixed, extra, message", [
    ("3.12.4", "/usr/local", [], "not relocatable"),
    ("3.13.1", None, ["--python-version", "3.12"], "not 3.12"),
])
def test_bundled_python_from_a_directory_refused(tmp_path, wheelhouse, version, fixed, extra,
                                                 message):
    python = fake_python(tmp_path / "cpython", version, fixed)
    result = _bundled(tmp_path, wheelhouse, ["--python-from", str(python), *extra])
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert "--python-from" in line and message in line, line
    assert not (tmp_path / "vendor").exists()


def test_verify_refuses_a_bundle_without_the_schema_dump_its_manifest_names(tmp_path):
    runtime = {"python": "bundled", "python_version": "3.12.9",
               "schema": {"postgres_major": 15, "migrations": 5}}
    payload = tmp_path / "payload"
    for rel in ("app/manage.py", "schema/schema.json"):
        (payload / rel).parent.mkdir(parents=True, exist_ok=True)
        (payload / rel).write_text("x\n")
    made = bundles.write(tmp_path / "vendor", "saleor", "1.0.0", payload, runtime, "test",
                         stand_in=True, created="2026-01-01T00:00:00Z")
    with pytest.raises(UserError, match="schema/schema.dump: missing"):
        bundles.verify(made.path)
