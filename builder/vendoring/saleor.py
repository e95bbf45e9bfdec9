"""`builder vendor saleor`: the Saleor API source, its fully pinned requirements, one wheel per
requirement for the bundle's Python on x86_64 Linux, and (runtime bundled) a relocatable
CPython."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.utils import InvalidSdistFilename, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.vendoring import bundles, common, pgserver, pins, relocatable, schemadump, slim
from builder.vendoring.common import Source, step

DEFAULT_URL = "https://github.com/saleor/saleor/archive/refs/tags/{version}.tar.gz"
# The wheels a CPython on x86_64 Debian 12/13 (glibc 2.36+) can install, best first.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "linux_x86_64")
DEFAULT_PYTHON = {"bundled": "3.12", "system": "3.13"}  # system: Debian 13's python3
SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclasses.dataclass(frozen=True)
class Options:
    runtime: str = "bundled"
    python_version: str | None = None
    python_from: Path | None = None
    find_links: tuple[Path, ...] = ()
    no_index: bool = False
    build_python: Path | None = None
    schema_dump: bool = False
    postgres_bin: Path | None = None

    def check(self) -> None:
        """Bad option combinations, before anything is fetched or built."""
        if self.runtime not in DEFAULT_PYTHON:
            raise UserError(f"expected bundled or system, got {self.runtime!r}",
                            field="--runtime")
        if self.python_version is not None \
                and not re.fullmatch(r"3\.[0-9]+(\.[0-9]+)?", self.python_version):
            raise UserError(f"expected 3.X or 3.X.Y, got {self.python_version!r}",
                            field="--python-version")
        if self.python_from is not None:
            if self.runtime != "bundled":
                raise UserError("goes with --runtime bundled only", field="--python-from")
            if not (self.python_from / "bin" / "python3").is_file():
                raise UserError(f"{self.python_from} has no bin/python3 (expected a "
                                "relocatable CPython install)", field="--python-from")
            if (self.python_from / "pyvenv.cfg").exists():
                raise UserError(f"{self.python_from} is a virtual environment, not a "
                                "relocatable CPython install", field="--python-from")
        for link in self.find_links:
            if not link.is_dir():
                raise UserError(f"no such directory: {link}", field="--find-links")
        if self.build_python is not None and not self.build_python.is_file():
            raise UserError(f"no such file: {self.build_python}", field="--build-python")
        if self.no_index and not self.find_links:
            raise UserError("needs --find-links DIR (where the wheels are)", field="--no-index")
        if self.postgres_bin is not None and not self.schema_dump:
            raise UserError("goes with --schema-dump only", field="--postgres-bin")
        if self.schema_dump:
            if self.runtime != "bundled" and self.build_python is None:
                # The dump is made by the bundle's wheels, run here on a Python of their X.Y.
                raise UserError("needs --runtime bundled, or --build-python (a CPython of "
                                "the image's X.Y) with --runtime system", field="--schema-dump")
            if self.runtime == "system":
                _same_minor(self.build_python, self.python_version or DEFAULT_PYTHON["system"],
                            "--build-python")
            pgserver.find_bindir(self.postgres_bin)

    def pip_sources(self) -> list[str]:
        args = [f"--find-links={link.resolve()}" for link in self.find_links]
        return args + (["--no-index"] if self.no_index else [])


def vendor(version: str, source: str | None, out: Path, options: Options,
           progress: Progress) -> dict:
    options.check()

    def build(src: Source, payload: Path, work: Path, progress: Progress) -> dict:
        _check_layout(src)
        text, origin = _requirements(src, work, progress)
        label = f"{src.label}: {origin}"
        pinned = pins.parse(text, label)
        with step(progress, "app", "copying the source tree"):
            common.copy_tree(src.root, payload / "app")
        if options.runtime == "bundled":
            python_version = _python(options, payload / "python", work, progress)
        else:
            python_version = options.python_version or DEFAULT_PYTHON["system"]
        chosen = pins.applicable(pinned, pins.target_environment(python_version), label)
        pins.check_hashes(chosen, label)
        target = payload / "python" / "bin" / "python3" if options.runtime == "bundled" else None
        built = _wheels(chosen, python_version, payload / "wheels", work, options, progress,
                        target)
        header = (f"Pinned requirements of the bundle ({origin} of the source), for CPython "
                  f"{python_version} on x86_64 Linux.\nInstall: pip install --no-index "
                  "--find-links wheels/ -r requirements.txt")
        (payload / "requirements.txt").write_text(pins.render(pinned, built, header))
        runtime = {"python": options.runtime, "python_version": python_version}
        if options.schema_dump:
            python = target or options.build_python
            runtime["schema"] = schemadump.make(payload, version, python, work, progress,
                                                options.postgres_bin)
        return runtime

    return common.make("saleor", version, source, DEFAULT_URL, out, build, progress)


def _same_minor(python: Path, version: str, field: str) -> None:
    found = _probe(python, field, relocated=False)["version"]
    if found.split(".")[:2] != version.split(".")[:2]:
        raise UserError(f"{python} is Python {found}, but the wheels are for {version}",
                        field=field)


def _check_layout(src: Source) -> None:
    missing = [rel for rel in ("manage.py", "saleor/__init__.py", "saleor/celeryconf.py")
               if not (src.root / rel).is_file()]
    if not any((src.root / rel).is_file() for rel in ("saleor/asgi.py",
                                                       "saleor/asgi/__init__.py")):
        missing.append("saleor/asgi")
    if missing:
        raise UserError(f"{src.label} is not a Saleor source tree: it has no "
                        f"{', '.join(missing)}", field="--source")


def find_uv() -> str:
    """$BUILDER_UV, else the uv of the `vendor` extra (pip install 'builder[vendor]'), else
    one on PATH."""
    if os.environ.get("BUILDER_UV"):
        return os.environ["BUILDER_UV"]
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    raise OperationError("uv is needed here and was not found: pip install 'builder[vendor]' "
                         "(or put uv on PATH)")


def _requirements(src: Source, work: Path, progress: Progress) -> tuple[str, str]:
    """The source's pinned requirements: requirements.txt, else uv.lock exported (with the
    dev group: upstream Saleor imports pytest at start-up)."""
    if (src.root / "requirements.txt").is_file():
        return (src.root / "requirements.txt").read_text(), "requirements.txt"
    if (src.root / "uv.lock").is_file():
        if not (src.root / "pyproject.toml").is_file():
            raise UserError(f"{src.label} has uv.lock but no pyproject.toml", field="--source")
        exported = work / "requirements.uv.txt"
        with step(progress, "requirements", "uv export --frozen (uv.lock)"):
            common.run([find_uv(), "export", "--frozen", "--no-emit-project", "--no-progress",
                        "--format", "requirements-txt", "--output-file", str(exported)],
                       what="uv export", progress=progress, cwd=src.root)
        return exported.read_text(), "uv.lock"
    raise UserError(f"{src.label} has neither requirements.txt nor uv.lock", field="--source")


# --- the Python of runtime "bundled" -------------------------------------------------------

_PROBE = ("import json, sys, sysconfig; print(json.dumps({'version': "
          "'%d.%d.%d' % sys.version_info[:3], 'platform': sysconfig.get_platform(), "
          "'implementation': sys.implementation.name, 'prefix': sys.prefix}))")


def _python(options: Options, dest: Path, work: Path, progress: Progress) -> str:
    """Put a relocatable CPython at dest; its full version."""
    wanted = options.python_version or (None if options.python_from else
                                        DEFAULT_PYTHON["bundled"])
    if options.python_from is not None:
        field = "--python-from"
        with step(progress, "python", f"copying {options.python_from}"):
            common.copy_tree(options.python_from, dest, ignore=())
    else:
        field = "--python-version"
        _uv_python(wanted, dest, work, progress)
    with step(progress, "python-slim", "dropping test/, IDLE, Tk, config-*, site-packages"
              ) as note:
        before = _tree_size(dest)
        slim.slim(dest)
        note["done"] = f"{before / 1e6:.1f} MB -> {_tree_size(dest) / 1e6:.1f} MB"
    with step(progress, "python-relocate", "RPATH/RUNPATH of its ELF files") as note:
        # Errors name the file where the user can look at it: in --python-from's tree.
        label = str(options.python_from) if options.python_from else "python (uv's download)"
        changed = relocatable.make_relocatable(dest, options.python_from or dest, label)
        note["done"] = f"{changed} rewritten to $ORIGIN" if changed else "already relocatable"
    info = _probe(dest / "bin" / "python3", field)
    where = options.python_from or "uv's download"
    if info["implementation"] != "cpython" or info["platform"] != "linux-x86_64":
        raise UserError(f"{where} is {info['implementation']} for {info['platform']}, not "
                        "CPython for linux-x86_64", field=field)
    if os.path.realpath(info["prefix"]) != os.path.realpath(dest):
        raise UserError(f"{where} is not relocatable: copied, it still looks for its "
                        f"library in {info['prefix']}", field=field)
    if wanted and not (info["version"] + ".").startswith(wanted + "."):
        raise UserError(f"{where} is Python {info['version']}, not {wanted}", field=field)
    return info["version"]


def _tree_size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir() or p.is_symlink())


def _probe(python: Path, field: str, relocated: bool = True) -> dict:
    env = _quiet_env()
    try:
        done = subprocess.run([str(python), "-I", "-B", "-c", _PROBE], capture_output=True,
                              text=True, env=env, timeout=60, check=False)
    except OSError as exc:
        raise UserError(f"{python} does not run here: {exc.strerror}", field=field) from exc
    if done.returncode != 0:
        where = "from its new place" if relocated else "here"
        raise UserError(f"{python} does not run {where}: "
                        f"{common.tail(done.stderr, 1)}", field=field)
    return json.loads(done.stdout)


def _uv_python(version: str, dest: Path, work: Path, progress: Progress) -> None:
    install = work / "uv-python"
    env = dict(os.environ, UV_PYTHON_BIN_DIR=str(work / "uv-bin"),
               UV_PYTHON_INSTALL_DIR=str(install))
    with step(progress, "python", f"uv python install {version}"):
        try:
            common.run([find_uv(), "python", "install", version, "--install-dir", str(install),
                        "--no-progress"], what="uv python install", progress=progress, env=env)
        except OperationError as exc:
            urls = re.findall(r"https?://[^\s`'\"]+", str(exc))
            what = f"could not download {urls[-1]}" if urls else common.tail(str(exc), 1)
            raise OperationError(
                f"uv python install {version} failed: {what} (uv fetches CPython from "
                "GitHub); offline, use --python-from DIR (a relocatable CPython) or "
                "--runtime system") from exc
        found = sorted(p for p in install.glob("cpython-*")
                       if p.is_dir() and not p.is_symlink() and (p / "bin" / "python3").exists())
        if not found:
            raise OperationError(f"uv python install {version} left no cpython-* in {install}")
        common.copy_tree(found[-1], dest, ignore=())


# --- wheels ---------------------------------------------------------------------------------

def _pure(wheel: str) -> bool:
    _, _, _, tags = parse_wheel_filename(wheel)
    return all(t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py")
               for t in tags)


def _fits(wheel: str, minor: str) -> bool:
    """A wheel built here by the target's CPython: cpXY for x86_64 Linux."""
    _, _, _, tags = parse_wheel_filename(wheel)
    cp = "cp" + minor.replace(".", "")
    return any(t.interpreter == cp and t.platform.endswith("x86_64")
               and t.platform.startswith(("linux", "manylinux")) for t in tags)


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _wheels(chosen: list[pins.Pin], python_version: str, dest: Path, work: Path,
            options: Options, progress: Progress,
            target_python: Path | None) -> dict[tuple[str, str], tuple[str, ...]]:
    """One wheel per pin in dest. A pin with no wheel for the target but an sdist is built
    here (by the target's CPython when there is one: the bundled python, --build-python, or
    pythonX.Y on PATH); its wheel's hash replaces the sdist's in requirements.txt (pip checks
    a wheel against the hashes listed for it)."""
    dest.mkdir()
    listed = work / "requirements.download.txt"
    listed.write_text("".join(f"{p.name}=={p.version} "
                              + " ".join(f"--hash={h}" for h in p.hashes) + "\n"
                              for p in chosen))
    minor = ".".join(python_version.split(".")[:2])
    with step(progress, "wheels",
              f"{len(chosen)} requirements for CPython {minor} x86_64 Linux") as note:
        common.run([*_pip(sys.executable), "download", "--no-deps", "--prefer-binary",
                    "--python-version", minor, "--implementation", "cp",
                    *(f"--platform={p}" for p in PLATFORMS), *options.pip_sources(),
                    "-r", str(listed), "-d", str(dest)],
                   what="pip download", progress=progress)
        note["done"] = f"{sum(f.stat().st_size for f in dest.iterdir()) / 1e6:.1f} MB"
    built: dict[tuple[str, str], tuple[str, ...]] = {}
    sdists = sorted(f for f in dest.iterdir() if f.name.endswith(SDIST_SUFFIXES))
    if sdists:
        with step(progress, "sdists", f"building {len(sdists)} with no wheel for the target"):
            builder = _SdistBuilder(work, minor, options, progress, target_python)
            for sdist in sdists:
                built.update(builder.build(sdist, dest))
    _check_one_each(chosen, dest)
    return built


class _SdistBuilder:
    def __init__(self, work: Path, minor: str, options: Options, progress: Progress,
                 target_python: Path | None):
        self.work, self.minor, self.options, self.progress = work, minor, options, progress
        self.target = target_python
        self.venv: Path | None = None

    def _python(self) -> tuple[str, bool]:
        """The interpreter to build with, and whether it is the target's CPython."""
        candidate = self.options.build_python or self.target
        if candidate is None:
            found = shutil.which(f"python{self.minor}")
            candidate = Path(found) if found else None
        if candidate is not None and self.venv is None:
            try:
                info = _probe(candidate, "--build-python", relocated=False)
            except UserError:
                if self.options.build_python:
                    raise
                info = None
            if info and (info["version"] + ".").startswith(self.minor + "."):
                venv = self.work / "build-venv"
                common.run([str(candidate), "-m", "venv", str(venv)],
                           what=f"a venv of {candidate} to build sdists", progress=self.progress,
                           env=_quiet_env())
                self.venv = venv
            elif self.options.build_python:
                raise UserError(f"{candidate} is not CPython {self.minor} "
                                f"({info and info['version']})", field="--build-python")
        if self.venv is not None:
            return str(self.venv / "bin" / "python"), True
        return sys.executable, False

    def build(self, sdist: Path, dest: Path) -> dict[tuple[str, str], tuple[str, ...]]:
        try:
            name = str(parse_sdist_filename(sdist.name)[0])
        except InvalidSdistFilename:
            name = sdist.name
        python, is_target = self._python()
        out = self.work / "built" / sdist.name
        common.run([*_pip(python), "wheel", "--no-deps", *self.options.pip_sources(),
                    "-w", str(out), str(sdist)],
                   what=f"building a wheel of {sdist.name}", progress=self.progress,
                   env=_quiet_env())
        wheels = list(out.glob("*.whl"))
        ok = len(wheels) == 1 and (_pure(wheels[0].name)
                                   or (is_target and _fits(wheels[0].name, self.minor)))
        if not ok:
            hint = ("" if is_target else
                    f"; with CPython {self.minor} here (--build-python PATH) it could be "
                    "compiled")
            raise OperationError(f"{name}: no wheel of it for CPython {self.minor} on x86_64 "
                                 f"Linux on the index, and its sdist builds "
                                 f"{', '.join(w.name for w in wheels) or 'nothing'} here, not "
                                 f"a wheel for the target{hint}")
        wheel = wheels[0]
        shutil.move(wheel, dest / wheel.name)
        sdist.unlink()
        kind = "" if _pure(wheel.name) else " (compiled here: needs glibc >= this machine's)"
        self.progress.say(f"sdists: {sdist.name} -> {wheel.name}{kind}")
        wname, wversion, _, _ = parse_wheel_filename(wheel.name)
        digest = bundles.sha256_file(dest / wheel.name)
        return {(str(wname), str(wversion)): (f"sha256:{digest}",)}


def _quiet_env() -> dict:
    """No bytecode written into the interpreters used (the bundled one is payload)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_one_each(chosen: list[pins.Pin], dest: Path) -> None:
    have: dict[str, list[tuple[Version, str]]] = {}
    for f in dest.iterdir():
        if not f.name.endswith(".whl"):
            raise OperationError(f"pip download left {f.name}, which is not a wheel")
        name, ver, _, _ = parse_wheel_filename(f.name)
        have.setdefault(str(name), []).append((ver, f.name))
    for pin in chosen:
        got = have.pop(pin.name, [])
        if len(got) != 1 or got[0][0] != Version(pin.version):
            raise OperationError(f"{pin.name}=={pin.version}: expected one wheel, found "
                                 f"{', '.join(n for _, n in got) or 'none'}")
    if have:
        raise OperationError(f"wheels no requirement asked for: "
                             f"{', '.join(n for v in have.values() for _, n in v)}")
