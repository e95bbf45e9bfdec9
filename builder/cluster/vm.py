"""One QEMU VM booted from a baked artifact: a copy-on-write overlay (the artifact is never
written), direct kernel boot with the image's own kernel, a management NIC on QEMU's user
network restricted to forwards on 127.0.0.1 (SSH, and the ports a role serves), and
optionally a NIC on a private switch shared with the other VMs of a cluster.

The VM outlives the process that started it (a cluster keeps running after `builder
cluster up` returns): its pid file is how any later process finds, kills or stops it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from builder.bake.imagetest import ssh_config
from builder.cluster.process import end, live_pid
from builder.errors import OperationError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mac_address(*parts: str) -> str:
    """A stable, locally administered unicast MAC (QEMU's 52:54:00 prefix) for a NIC."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


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
    forwards: dict[int, int] = dataclasses.field(default_factory=dict)  # guest -> host port
    switch: Path | None = None  # a vde_switch control directory: the cluster network
    macs: tuple[str, str] | None = None  # (management, cluster) NIC addresses
    proc: subprocess.Popen | None = None

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "qemu.pid"

    @property
    def disk(self) -> Path:
        return self.workdir / "disk.qcow2"

    def _qcow2(self) -> Path:
        manifest = json.loads((self.artifact / "manifest.json").read_text())
        return self.artifact.resolve() / manifest["image"]

    def _network_args(self) -> list[str]:
        fwd = [f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"]
        fwd += [f"hostfwd=tcp:127.0.0.1:{host}-:{guest}"
                for guest, host in sorted(self.forwards.items())]
        mgmt_mac, cluster_mac = self.macs or (None, None)
        args = ["-netdev", f"user,id=n0,restrict=on,{','.join(fwd)}",
                "-device", "virtio-net,netdev=n0" + (f",mac={mgmt_mac}" if mgmt_mac else "")]
        if self.switch is not None:
            args += ["-netdev", f"vde,id=n1,sock={self.switch}",
                     "-device", "virtio-net,netdev=n1" + (f",mac={cluster_mac}"
                                                          if cluster_mac else "")]
        return args

    def start(self) -> VM:
        """Power on; the disk overlay is made on first start and kept across restarts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.disk.exists():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                            str(self._qcow2()), str(self.disk)], check=True)
        self.pidfile.unlink(missing_ok=True)
        cmd = [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-name", self.name, "-machine", f"type=pc,accel={self.accel}",
            "-cpu", "host" if self.accel == "kvm" else "max",
            # One vCPU under TCG: a second buys nothing on a shared 2-core host, and SMP
            # guests here sometimes die at boot patching kernel text (an int3 Oops in
            # sched_clock_cpu, seen with 5 VMs booting at once).
            "-m", str(self.memory), "-smp", str(self.cpus if self.accel == "kvm" else 1),
            "-display", "none", "-no-reboot", "-pidfile", str(self.pidfile),
            "-kernel", str(self.artifact.resolve() / "vmlinuz"),
            "-initrd", str(self.artifact.resolve() / "initrd.img"),
            # panic=-1 with -no-reboot: a guest kernel panic ends QEMU, so `cluster up` says
            # "powered off while booting" at once instead of waiting for its timeout.
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 audit=0",
            "-drive", f"file={self.disk},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"file={self.seed_iso},media=cdrom,readonly=on",
            *self._network_args(),
            "-serial", f"file:{self.console}",
        ]
        # Its own session: a Ctrl-C aimed at the CLI must not power off a cluster's VMs.
        # stderr to a file, not a pipe: the VM outlives this process and must never write
        # into a pipe nobody reads any more.
        with open(self.workdir / "qemu.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        # Return once the pid file names it: other processes find the VM only through it.
        deadline = time.monotonic() + 30
        while not self._pid_from_file():
            if self.proc.poll() is not None:
                raise OperationError(f"{self.name}: qemu exited: {self._exit_detail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise OperationError(f"{self.name}: qemu wrote no pid file in 30 s")
            time.sleep(0.1)
        return self

    def pid(self) -> int | None:
        """The running QEMU's pid, from its pid file, checked against /proc (pids recycle)."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        return self._pid_from_file()

    def _pid_from_file(self) -> int | None:
        return live_pid(self.pidfile, str(self.pidfile))

    def running(self) -> bool:
        return self.pid() is not None

    def _exit_detail(self) -> str:
        try:
            text = (self.workdir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[-300:] or f"see {self.console}"

    def wait_ssh(self, timeout: float = 300) -> float:
        """Seconds until sshd answers with its banner on the forwarded port."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.running() and (self.proc is None or self.proc.poll() is not None):
                raise OperationError(f"{self.name}: qemu exited: {self._exit_detail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=5) as s:
                    s.settimeout(10)
                    if s.recv(64).startswith(b"SSH-"):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(2)
        raise OperationError(f"{self.name}: no SSH after {timeout:.0f} s (see {self.console})")

    def kill(self) -> bool:
        """Hard power-off (SIGKILL: no shutdown, no flush), as when a host dies."""
        return self._end(signal.SIGKILL, grace=10)

    def stop(self, timeout: float = 15) -> bool:
        """Power off; True if it was running."""
        return self._end(signal.SIGTERM, grace=timeout)

    def _end(self, sig: int, grace: float) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        # running() polls a child QEMU, so it is reaped rather than left a zombie.
        return end(pid, self.running, grace=grace, sig=sig, name=f"{self.name}: qemu")

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ssh_command(port: int, key: Path, user: str, command: str) -> list[str]:
    # The client options of image tests (a VM's host keys are new on every boot), without
    # the multiplexing: these calls are few and must not leave a master behind.
    options = [line.strip().split(None, 1) for line in ssh_config(key, Path("/")).splitlines()
               if line.startswith("  ") and "Control" not in line]
    return ["ssh", *[arg for name, value in options for arg in ("-o", f"{name}={value}")],
            "-o", "BatchMode=yes", "-p", str(port), f"{user}@127.0.0.1", command]


def ssh(vm: VM, key: Path, user: str, command: str,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """One command on the VM as `user`."""
    return subprocess.run(ssh_command(vm.ssh_port, key, user, command), capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


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
