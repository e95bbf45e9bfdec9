"""A bundled CPython that runs anywhere (issue 17): RPATH/RUNPATH rewritten or refused by
`vendor saleor --python-from`, refused by `vendor verify` in the packed bundle, and the copy
slimmed. The ELF files are compiled here by gcc and patched by the real patchelf."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.errors import UserError
from builder.vendoring import bundles, elfdynamic, relocatable, slim

from .test_vendor import (  # noqa: F401  (wheelhouse is a fixture)
    errors,
    fake_python,
    make_saleor,
    vendor_cli,
    wheelhouse,
)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
needs_patchelf = pytest.mark.skipif(shutil.which("patchelf") is None, reason="needs patchelf")
EXT = "lib/python3.12/lib-dynload/_demo.cpython-312-x86_64-linux-gnu.so"


def _gcc(out: Path, source: str, *flags: str) -> Path:
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-o", str(out), str(c), *flags], check=True, capture_output=True)
    c.unlink()
    return out


@pytest.fixture(scope="module")
def elves(tmp_path_factory) -> dict[str, Path]:
    """A shared object and an executable needing it, compiled once (no RUNPATH yet)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    d = tmp_path_factory.mktemp("elves")
    lib = _gcc(d / "libpython3.12.so.1.0", "int py_answer(void) { return 42; }\n",
               "-shared", "-fPIC", "-Wl,-soname,libpython3.12.so.1.0")
    exe = _gcc(d / "python3.12", "int py_answer(void);\nint main(void) "
               "{ return py_answer() == 42 ? 0 : 1; }\n", str(lib), "-Wl,--enable-new-dtags")
    ext = _gcc(d / "ext.so", "int demo(void) { return 1; }\n", "-shared", "-fPIC")
    return {"lib": lib, "exe": exe, "ext": ext}


def _set_runpath(path: Path, entry: str, rpath: bool = False) -> None:
    subprocess.run(["patchelf", *(["--force-rpath"] if rpath else []), "--set-rpath", entry,
                    str(path)], check=True, capture_output=True)


def pyenv_like(root: Path, elves: dict[str, Path], runpath: str | None = None) -> Path:
    """A CPython install shaped like pyenv's: its ELF files' RUNPATH names root/lib (or
    runpath), and the parts a server never runs, and a vendoring machine's .pth file."""
    fake_python(root, "3.12.4")
    for key, rel in (("exe", "bin/python3.12"), ("lib", "lib/libpython3.12.so.1.0"),
                     ("ext", EXT)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(elves[key], root / rel)
        _set_runpath(root / rel, runpath or str(root / "lib"))
    std = root / "lib" / "python3.12"
    for rel in ("test/test_os.py", "idlelib/idle.py", "tkinter/__init__.py",
                "turtledemo/x.py", "config-3.12-x86_64-linux-gnu/libpython3.12.a",
                "site-packages/evil.pth", "site-packages/thirdparty/__init__.py",
                "site-packages/README.txt", "ensurepip/_bundled/pip-23.2.1-py3-none-any.whl",
                "lib-dynload/_testcapi.cpython-312-x86_64-linux-gnu.so"):
        (std / rel).parent.mkdir(parents=True, exist_ok=True)
        (std / rel).write_text("x\n")
    (root / "bin" / "idle3.12").write_text("#!/bin/sh\n")
    return root


def _bundle_of(tmp: Path, wheelhouse: Path, python: Path, env: dict | None = None):  # noqa: F811
    src = make_saleor(tmp / "src")
    return vendor_cli(["saleor", "--version", "2.0.0", "--source", str(src), "--python-from",
                       str(python), "--find-links", str(wheelhouse), "--no-index",
                       "--dir", str(tmp / "vendor")], tmp, env)


def _unpack(bundle: Path, dest: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    return dest / "saleor-2.0.0" / "python"


# --- reading ELF ------------------------------------------------------------------------------

@needs_gcc
@needs_patchelf
def test_elfdynamic_reads_needed_runpath_and_rpath(elves, tmp_path):
    exe = shutil.copy2(elves["exe"], tmp_path / "exe")
    _set_runpath(Path(exe), "/a/lib:$ORIGIN/../lib")
    got = elfdynamic.read(Path(exe))
    assert "libpython3.12.so.1.0" in got.needed and "libc.so.6" in got.needed
    assert got.runpath == ("/a/lib", "$ORIGIN/../lib") and got.rpath == ()
    _set_runpath(Path(exe), "/b", rpath=True)
    assert elfdynamic.read(Path(exe)).rpath == ("/b",)
    with pytest.raises(elfdynamic.NotElf):
        elfdynamic.read(Path(__file__))


# --- vendor saleor --python-from --------------------------------------------------------------

@needs_patchelf
def test_runpath_outside_is_rewritten_to_origin(elves, tmp_path, wheelhouse):  # noqa: F811
    python = pyenv_like(tmp_path / "pyenv" / "3.12.4", elves)
    result = _bundle_of(tmp_path, wheelhouse, python)
    assert result.returncode == 0, result.stderr
    root = _unpack(tmp_path / "vendor" / "saleor-2.0.0.tar.gz", tmp_path / "unpacked")
    assert elfdynamic.read(root / "bin/python3.12").runpath == ("$ORIGIN/../lib",)
    assert elfdynamic.read(root / "lib/libpython3.12.so.1.0").runpath == ("$ORIGIN",)
    assert elfdynamic.read(root / EXT).runpath == ("$ORIGIN/../..",)
    assert relocatable.problems(root) == []
    # The original install is gone: the copy still starts (it finds its libpython).
    shutil.rmtree(tmp_path / "pyenv")
    assert subprocess.run([root / "bin/python3.12"], check=False).returncode == 0
    verified = vendor_cli(["verify", str(tmp_path / "vendor" / "saleor-2.0.0.tar.gz")],
                          tmp_path)
    assert verified.returncode == 0, verified.stderr


def test_runpath_outside_is_refused_without_patchelf(elves, tmp_path, wheelhouse):  # noqa: F811
    if shutil.which("patchelf") is None:
        pytest.skip("needs patchelf to make the fixture")
    python = pyenv_like(tmp_path / "pyenv", elves)
    tools = tmp_path / "tools"  # PATH with the fake python's tools and no patchelf
    tools.mkdir()
    for tool in ("sh", "dirname"):
        (tools / tool).symlink_to(shutil.which(tool))
    result = _bundle_of(tmp_path, wheelhouse, python, {"PATH": str(tools)})
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert f"{python}/bin/python3.12: RUNPATH: {python}/lib points outside the bundle" in line
    assert "patchelf" in line
    assert not (tmp_path / "vendor").exists()


@needs_patchelf
def test_runpath_outside_the_original_install_is_refused(elves, tmp_path, wheelhouse):  # noqa: F811
    python = pyenv_like(tmp_path / "pyenv", elves, runpath="/opt/elsewhere/lib")
    result = _bundle_of(tmp_path, wheelhouse, python)
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert "RUNPATH: /opt/elsewhere/lib points outside the bundle" in line, line


@needs_patchelf
def test_make_relocatable_keeps_rpath_an_rpath(elves, tmp_path):
    root = tmp_path / "copy"
    original = tmp_path / "orig"
    (root / "lib").mkdir(parents=True)
    lib = Path(shutil.copy2(elves["lib"], root / "lib" / "libpython3.12.so.1.0"))
    _set_runpath(lib, f"{original}/lib", rpath=True)
    assert relocatable.make_relocatable(root, original, "x") == 1
    assert elfdynamic.read(lib) == elfdynamic.Dynamic(
        needed=elfdynamic.read(elves["lib"]).needed, rpath=("$ORIGIN",))


# --- vendor verify on the packed bundle -------------------------------------------------------

def _packed(tmp: Path, python_tree: Path) -> Path:
    payload = tmp / "payload"
    make_saleor(payload / "app")
    shutil.copytree(python_tree, payload / "python", symlinks=True)
    (payload / "requirements.txt").write_text("")
    (payload / "wheels").mkdir()
    bundle = bundles.write(tmp / "vendor", "saleor", "2.0.0", payload,
                           {"python": "bundled", "python_version": "3.12.4"}, "test", True)
    return bundle.path


@needs_patchelf
def test_verify_refuses_a_packed_runpath_that_leaves_the_bundle(elves, tmp_path):
    # The original install still exists: the check must not pass because of it.
    python = pyenv_like(tmp_path / "pyenv", elves)
    result = vendor_cli(["verify", str(_packed(tmp_path, python))], tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert "saleor-2.0.0/python/bin/python3.12 RUNPATH: " in line
    assert f"{python}/lib points outside the bundle" in line


@needs_patchelf
def test_verify_refuses_a_needed_library_looked_up_outside(elves, tmp_path):
    python = pyenv_like(tmp_path / "pyenv", elves)
    subprocess.run(["patchelf", "--remove-rpath", str(python / "bin/python3.12")], check=True)
    result = vendor_cli(["verify", str(_packed(tmp_path, python))], tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert "bin/python3.12 NEEDED: libpython3.12.so.1.0 is in the bundle but no" in line, line


def test_verify_refuses_a_python_that_does_not_start_unpacked(tmp_path):
    python = fake_python(tmp_path / "cpython", "3.12.4")
    (python / "bin" / "python3").write_text("#!/bin/sh\necho 'libpython: not found' >&2\n"
                                            "exit 127\n")
    result = vendor_cli(["verify", str(_packed(tmp_path, python))], tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = errors(result)
    assert "saleor-2.0.0/python/bin/python3: does not run unpacked: libpython" in line, line


# --- slimming ---------------------------------------------------------------------------------

@needs_patchelf
def test_slim_drops_tests_gui_config_and_site_packages(elves, tmp_path, wheelhouse):  # noqa: F811
    python = pyenv_like(tmp_path / "pyenv", elves)
    result = _bundle_of(tmp_path, wheelhouse, python)
    assert result.returncode == 0, result.stderr
    root = _unpack(tmp_path / "vendor" / "saleor-2.0.0.tar.gz", tmp_path / "unpacked")
    std = root / "lib" / "python3.12"
    for gone in ("test", "idlelib", "tkinter", "turtledemo", "config-3.12-x86_64-linux-gnu",
                 "site-packages/evil.pth", "site-packages/thirdparty",
                 "lib-dynload/_testcapi.cpython-312-x86_64-linux-gnu.so"):
        assert not (std / gone).exists(), gone
    assert not (root / "bin" / "idle3.12").exists()
    # venv creation (the image's install-saleor.sh) installs pip from ensurepip.
    assert (std / "ensurepip/_bundled/pip-23.2.1-py3-none-any.whl").is_file()
    assert (std / "site-packages/README.txt").is_file() and (std / "os.py").is_file()
    assert (root / EXT).is_file()


def test_slim_reports_what_it_removed(tmp_path):
    root = fake_python(tmp_path / "py")
    (root / "lib/python3.12/site-packages").mkdir()
    (root / "lib/python3.12/site-packages/x.pth").write_text("import os\n")
    (root / "lib/python3.12/test").mkdir()
    assert slim.slim(root) == ["lib/python3.12/site-packages/x.pth", "lib/python3.12/test"]
    assert slim.slim(root) == []


def test_problem_renders_file_and_field():
    err = relocatable.Problem("bin/python3", "RUNPATH", "/x", "points outside the bundle"
                              ).error("/opt/py/")
    assert isinstance(err, UserError)
    assert err.render() == "/opt/py/bin/python3: RUNPATH: /x points outside the bundle"
