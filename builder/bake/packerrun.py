"""One `packer build` as a child process: streamed log, stage progress, cancellation that
always takes the VM down with it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from builder.bake import packer
from builder.progress import Progress

# Packer's own lines (and our provisioners' markers) that start each stage.
STAGES = [
    (re.compile(r"Starting VM|Launching a source AWS instance"), "boot"),
    (re.compile(r"builder-stage: provision"), "provision"),
    (re.compile(r"builder-stage: test"), "test"),
    (re.compile(r"builder-stage: seal"), "seal"),
    (re.compile(r"Gracefully halting|Stopping the source instance"), "shutdown"),
    (re.compile(r"Converting hard drive|Creating AMI"), "convert"),
]
GRACE_SECONDS = 30
_NO_SSH = re.compile(r"Timeout waiting for SSH")


def never_reached_ssh(log: Path) -> bool:
    """The build failed because the guest never answered SSH (not in a later stage)."""
    if not log.exists():
        return False
    text = log.read_text(errors="replace")
    return bool(_NO_SSH.search(text)) and "builder-stage: provision" not in text


class Cancelled(Exception):
    pass


def build(hcl: Path, variables: dict[str, str], log: Path, progress: Progress,
          cancel: threading.Event) -> int:
    """Run packer build; returns its exit status. Raises Cancelled when `cancel` is set."""
    args = [packer.binary(), "build", "-color=false", "-on-error=cleanup", "-force"]
    for name, value in variables.items():
        args += ["-var", f"{name}={value}"]
    args.append(hcl.name)
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=hcl.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=packer.environment(), start_new_session=True, text=True,
                                bufsize=1)
        reader = threading.Thread(target=_follow, args=(proc, out, progress), daemon=True)
        reader.start()
        try:
            while proc.poll() is None:
                if cancel.is_set():
                    stop(proc)
                    raise Cancelled()
                time.sleep(0.2)
        except BaseException:
            stop(proc)
            raise
        finally:
            reader.join(timeout=5)
            progress.finish()
    return proc.returncode


def _follow(proc: subprocess.Popen, out, progress: Progress) -> None:
    for line in proc.stdout:
        out.write(line)
        out.flush()
        for pattern, stage in STAGES:
            if pattern.search(line) and progress.current != stage:
                progress.stage(stage)
                break


def stop(proc: subprocess.Popen) -> None:
    """Ask Packer to cancel (it deletes its VM and output), then make sure of it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_leftovers(marker: str) -> int:
    """SIGKILL any process whose command line mentions `marker` (a bake's private temp dir):
    a QEMU that outlived its Packer must not keep running."""
    killed = 0
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
