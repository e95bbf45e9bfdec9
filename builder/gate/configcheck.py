"""A rendered config file checked by the program that reads it, where this host has that
program, else by its format alone: `haproxy -c`, `patroni --validate-config`, `nginx -t`,
a YAML parse, systemd's environment-file syntax, `sh -n`."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml


class ConfigError(Exception):
    pass


def _tool(argv: list[str], path: Path) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise ConfigError(f"{path.name}: {argv[0].rsplit('/', 1)[-1]}: " + " | ".join(lines[:4]))


def _haproxy(path: Path) -> str:
    exe = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if not exe:
        return "not checked (haproxy not installed)"
    text = path.read_text()
    try:
        pwd.getpwnam("haproxy")
        grp.getgrnam("haproxy")
    except KeyError:
        # The image has the account (Debian's package makes it); a host without it would
        # fail -c on that alone.
        me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        text = re.sub(r"(?m)^(\s+)user haproxy$", rf"\g<1>user {me}", text)
        text = re.sub(r"(?m)^(\s+)group haproxy$", rf"\g<1>group {group}", text)
    with tempfile.TemporaryDirectory(prefix="builder-haproxy-") as tmp:
        cfg = Path(tmp) / path.name
        cfg.write_text(text)
        _tool([exe, "-c", "-q", "-f", str(cfg)], path)
    return "haproxy -c"


def _yaml(path: Path) -> str:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a YAML mapping, got {type(data).__name__}")
    patroni = shutil.which("patroni")
    if path.name.endswith("patroni.yml") and patroni:
        _tool([patroni, "--validate-config", str(path)], path)
        return "YAML, patroni --validate-config"
    return "YAML"


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=(.*)")


def _env_file(path: Path) -> str:
    """systemd's EnvironmentFile: NAME=value lines; a double-quoted value may span lines."""
    lines = iter(enumerate(path.read_text().splitlines(), 1))
    for number, line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if not match:
            raise ConfigError(f"{path.name} line {number}: expected NAME=value")
        value = match.group(1)
        if value.startswith('"'):
            while not (len(value) > 1 and re.search(r'(?<!\\)"$', value)):
                following = next(lines, None)
                if following is None:
                    raise ConfigError(f"{path.name} line {number}: quote never closed")
                value += "\n" + following[1]
    return "environment-file syntax"


def _nginx(path: Path) -> str:
    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not exe:
        return "not checked (nginx not installed)"
    with tempfile.TemporaryDirectory(prefix="builder-nginx-") as tmp:
        (Path(tmp) / "logs").mkdir()
        main = Path(tmp) / "nginx.conf"
        main.write_text(f"pid {tmp}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                        f"http {{\n    include {path};\n}}\n")
        _tool([exe, "-t", "-q", "-p", tmp, "-c", str(main)], path)
    return "nginx -t"


def _shell(path: Path) -> str:
    _tool(["sh", "-n", str(path)], path)
    return "sh -n"


def check(path: Path) -> str:
    """How the file was checked; raises ConfigError with one line when it is wrong."""
    name = path.name
    if name.endswith("haproxy.cfg"):
        return _haproxy(path)
    if name.endswith((".yml", ".yaml")):
        return _yaml(path)
    if name.endswith(".env"):
        return _env_file(path)
    if name.endswith(".sh"):
        return _shell(path)
    if name.startswith("nginx") and name.endswith(".conf"):
        return _nginx(path)
    # redis-server has no config test; the image's suite starts it on the rendered file.
    return "rendered (no checker for it)"
