"""The private network of a local cluster: a vde_switch on a unix socket directory.

VM-to-VM traffic stays on this switch (no host interface, no root, nothing routed): each VM
gets a second NIC plugged into it, and the host reaches the VMs only through the forwards
on 127.0.0.1 of their management NIC. The switch is a daemon with a pid file, so it
outlives `builder cluster up` and `builder cluster down` can find and stop it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from builder.cluster.process import end, live_pid
from builder.errors import OperationError, UserError


class Switch:
    def __init__(self, directory: Path):
        self.directory = directory

    @property
    def socket_dir(self) -> Path:
        return self.directory / "switch"

    @property
    def pidfile(self) -> Path:
        return self.directory / "switch.pid"

    def pid(self) -> int | None:
        return live_pid(self.pidfile, "vde_switch", str(self.socket_dir))

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 10) -> Switch:
        if self.running():
            return self
        tool = shutil.which("vde_switch")
        if not tool:
            raise UserError("vde_switch is not installed (run `make setup`; Debian package "
                            "vde2)", field="cluster network")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        proc = subprocess.run([tool, "--sock", str(self.socket_dir), "--dirmode", "0700",
                               "--mode", "0600", "--daemon", "--pidfile", str(self.pidfile)],
                              capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ((self.socket_dir / "ctl").exists() and self.running()):
            if proc.returncode != 0 or time.monotonic() > deadline:
                raise OperationError(f"vde_switch did not start in {self.socket_dir}: "
                                     f"{(proc.stderr or proc.stdout).strip()[-300:]}")
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 10) -> bool:
        pid = self.pid()
        if pid is not None:
            end(pid, self.running, grace=timeout, name="vde_switch")
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None
