"""KVM when a test boot under KVM really works, TCG otherwise (nested KVM is often broken)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

PROBE_SECONDS = 20
# A line every booting kernel prints early; KVM that cannot run a guest never gets there.
BOOT_MARK = b"Linux version"


def _qemu() -> str:
    return shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"


def _probe(kernel: str, initrd: str) -> bool:
    cmd = [_qemu(), "-accel", "kvm", "-cpu", "host", "-m", "256", "-nographic", "-no-reboot",
           "-nodefaults", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
           "-append", "console=ttyS0 panic=-1 rdinit=/nonexistent"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + PROBE_SECONDS
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read(65536) or b""
            seen += chunk
            if BOOT_MARK in seen:
                return True
            time.sleep(0.2)
        seen += proc.stdout.read() or b""
        return BOOT_MARK in seen
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def choose(state: Path, kernel: str | None, initrd: str | None) -> str:
    """`kvm` or `tcg`. BUILDER_ACCEL forces one; the probe's answer is cached per host."""
    forced = os.environ.get("BUILDER_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not kernel or not initrd:
        return "tcg"
    cache = state / "accel.json"
    host = f"{platform.release()}|{shutil.which('qemu-system-x86_64')}"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("host") == host:
            return cached["accel"]
    except (OSError, ValueError, KeyError):
        pass
    accel = "kvm" if _probe(kernel, initrd) else "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"host": host, "accel": accel}) + "\n")
    return accel
