"""Run testinfra suites (tests/images/) against a VM over SSH: inside a bake or after boot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from builder.errors import UserError
from builder.spec.project import find_project

SSH_TARGET = re.compile(r"^(?P<user>[a-z_][a-z0-9_-]*)@(?P<host>[A-Za-z0-9.-]+):(?P<port>\d+)$")


def ssh_config(key: Path, control_dir: Path) -> str:
    # Bake VMs get new host keys on every boot: pinning them would only break the next bake.
    # One multiplexed connection: a new SSH handshake costs seconds in a TCG guest.
    return (
        "Host *\n"
        f"  IdentityFile {key}\n"
        f"  ControlPath {control_dir}/cm-%C\n"
        "  ControlMaster auto\n"
        "  ControlPersist 120\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
        "  ConnectTimeout 30\n"
        "  ServerAliveInterval 15\n"
    )


def suite_files(project_root: Path, spec: dict, phase: str) -> list[Path]:
    files = []
    common = project_root / "tests" / "images" / "common" / f"test_{phase}_common.py"
    if common.is_file():
        files.append(common)
    if spec.get("tests"):
        files += sorted((project_root / spec["tests"]).glob(f"test_{phase}*.py"))
    return files


def run(spec_file: Path, phase: str, ssh_target: str, key: Path | None, key_env: str | None,
        junit: Path | None, project_dir: Path | None) -> int:
    match = SSH_TARGET.match(ssh_target)
    if not match:
        raise UserError(f"expected USER@HOST:PORT, got {ssh_target!r}", field="--ssh")
    if bool(key) == bool(key_env):
        raise UserError("give exactly one of --key and --key-env", field="--key")
    project = find_project(start=project_dir)
    spec = json.loads(spec_file.read_text())
    files = suite_files(project.root, spec, phase)
    if not files:
        raise UserError(f"no test_{phase}*.py for role {spec.get('role')}", field="tests")
    with tempfile.TemporaryDirectory(prefix="builder-testinfra-") as tmp:
        if key_env:
            material = os.environ.get(key_env, "")
            if "PRIVATE KEY" not in material:
                raise UserError(f"${key_env} holds no private key", field="--key-env")
            key = Path(tmp) / "key"
            key.write_text(material.rstrip("\n") + "\n")
            key.chmod(0o600)
        config = Path(tmp) / "ssh_config"
        config.write_text(ssh_config(key, Path(tmp)))
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
               f"--hosts=ssh://{match['user']}@{match['host']}:{match['port']}",
               f"--ssh-config={config}", "--sudo"]
        if junit:
            cmd.append(f"--junitxml={junit}")
        env = dict(os.environ, BUILDER_IMAGE_SPEC=str(spec_file.resolve()),
                   BUILDER_IMAGE_PHASE=phase)
        env.pop(key_env or "", None)
        try:
            proc = subprocess.run([*cmd, *map(str, files)], env=env, cwd=project.root,
                                  check=False)
        finally:
            subprocess.run(["ssh", "-F", str(config), "-O", "exit", "-p", match["port"],
                            f"{match['user']}@{match['host']}"], capture_output=True,
                           check=False, timeout=30)
        return proc.returncode
