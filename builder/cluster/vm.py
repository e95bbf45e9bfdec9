"""One QEMU VM booted from a baked artifact: a copy-on-write overlay (the artifact is never
written), direct kernel boot with the image's own kernel, SSH forwarded on 127.0.0.1 only,
guest traffic restricted to that forward. Always stopped by its owner (context manager)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from builder.errors import OperationError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class VM:
    name: str
    artifact: Path              # output/qemu/<role>/<version>-<key>/
    workdir: Path
    seed_iso: Path
    memory: int = 1024
    cpus: int = 2
    accel: str = "tcg"
    ssh_port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def _qcow2(self) -> Path:
        manifest = json.loads((self.artifact / "manifest.json").read_text())
        return self.artifact.resolve() / manifest["image"]

    def start(self) -> VM:
        self.workdir.mkdir(parents=True, exist_ok=True)
        overlay = self.workdir / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(self._qcow2()), str(overlay)], check=True)
        cmd = [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-name", self.name, "-machine", f"type=pc,accel={self.accel}",
            "-cpu", "host" if self.accel == "kvm" else "max",
            "-m", str(self.memory), "-smp", str(self.cpus),
            "-display", "none", "-no-reboot",
            "-kernel", str(self.artifact.resolve() / "vmlinuz"),
            "-initrd", str(self.artifact.resolve() / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0",
            "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={self.seed_iso},media=cdrom,readonly=on",
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", "virtio-net,netdev=n0",
            "-serial", f"file:{self.console}",
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        return self

    def wait_ssh(self, timeout: float = 300) -> float:
        """Seconds until sshd answers with its banner on the forwarded port."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise OperationError(f"{self.name}: qemu exited: "
                                     f"{self.proc.stderr.read().decode(errors='replace')[-300:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=5) as s:
                    s.settimeout(10)
                    if s.recv(64).startswith(b"SSH-"):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(2)
        raise OperationError(f"{self.name}: no SSH after {timeout:.0f} s (see {self.console})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ssh(vm: VM, key: Path, user: str, command: str,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """One command on the VM as `user` (the VM's host keys are new on every boot)."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=20", "-p", str(vm.ssh_port), f"{user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def wait_for_file(vm: VM, key: Path, user: str, path: str, timeout: float = 300) -> float:
    """Seconds until `path` exists on the VM (the node agent's report, say)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if ssh(vm, key, user, f"test -s {path}").returncode == 0:
                return time.monotonic() - started
        except subprocess.TimeoutExpired:
            pass
        time.sleep(3)
    raise OperationError(f"{vm.name}: {path} did not appear within {timeout:.0f} s")
