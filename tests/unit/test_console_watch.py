"""The agent's console announcement and the host's reading of it (cluster readiness without
an SSH login per poll)."""

from __future__ import annotations

import pytest

from builder.agent.announce import announce, announce_leave, line
from builder.cluster.console import ConsoleWatch, exit_cause, leave_report

REPORT = {"state": "ready", "identity": {"instance_id": "i-new"}}


def test_the_announcement_is_read_for_its_own_instance_only(tmp_path):
    console = tmp_path / "console.log"
    console.write_bytes(b"[    3.1] kernel noise\r\n")
    watch = ConsoleWatch(console, "i-new")
    assert watch.poll() is None
    with open(console, "ab") as fh:  # a replaced node's stale line, then half of ours
        fh.write(f"{line(dict(REPORT, identity={'instance_id': 'i-old'}))}\r\n".encode())
        fh.write(line(REPORT).encode()[:20])
    assert watch.poll() is None
    with open(console, "ab") as fh:
        fh.write(line(REPORT).encode()[20:] + b"\r\n[   70.2] more noise\n")
    assert watch.poll() == "ready"
    assert watch.poll() == "ready"  # nothing new: the state stays


def test_a_console_started_over_forgets_the_last_boot(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("noise\n" * 50 + line(REPORT) + "\n")
    watch = ConsoleWatch(console, "i-new")
    assert watch.poll() == "ready"
    console.write_text("booting again\n")  # QEMU truncates the file on the next power-on
    assert watch.poll() is None
    with open(console, "a") as fh:
        fh.write(line(dict(REPORT, state="failed")) + "\n")
    assert watch.poll() == "failed"


def test_a_missing_console_is_no_announcement(tmp_path):
    assert ConsoleWatch(tmp_path / "absent.log", "i-new").poll() is None


def test_announce_writes_one_line_and_says_when_it_could_not(tmp_path):
    target = tmp_path / "console"
    assert announce(REPORT, target) is True
    assert target.read_text().strip() == "builder-agent: boot ready i-new"
    assert announce(REPORT, tmp_path / "no" / "such" / "console") is False
    assert line({}) == "builder-agent: boot unknown -"


def test_the_last_leave_report_is_read_back_from_the_console(tmp_path):
    console = tmp_path / "console.log"
    assert leave_report(console) is None
    assert announce_leave({"etcd": "kept"}, console)
    with open(console, "a") as fh:
        fh.write("noise\nbuilder-agent: leave {not json\n")
    report = {"etcd": "removed", "switchover": "done"}
    with open(console, "a") as fh:
        fh.write("\n")
    announce_leave(report, tmp_path / "second")
    with open(console, "a") as fh:
        fh.write((tmp_path / "second").read_text())
    assert leave_report(console) == report


SOFTDOG = """[  312.4] patroni[801]: INFO: no action. I am (etcd-patroni-1), the leader
[  371.9] softdog: Initiating system reboot
"""
PANIC = """[    9.1] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    9.1] RIP: 0010:sched_clock_cpu+0x10/0x1b0
[    9.2] Kernel panic - not syncing: Attempted to kill the idle task!
"""
POWER_OFF = """[  101.0] systemd-shutdown[1]: Powering off.
[  101.2] reboot: Power down
"""


@pytest.mark.parametrize("text, kind, words", [
    (SOFTDOG, "reset", "softdog: Initiating system reboot"),
    (PANIC, "reset", "Oops: int3"),  # the first sign, not the panic that follows it
    (POWER_OFF, "power-off", "reboot: Power down"),
    ("[    1.0] Linux version 6.1.0\n[    4.2] systemd[1]: Started foo\n", "unknown",
     "systemd[1]: Started foo"),
    ("", "unknown", "empty console"),
])
def test_how_a_guest_went_down_is_read_from_its_console(tmp_path, text, kind, words):
    console = tmp_path / "console.log"
    console.write_text(text.replace("\n", "\r\n"))
    found, line = exit_cause(console)
    assert found == kind and words in line


def test_a_missing_console_has_no_cause(tmp_path):
    assert exit_cause(tmp_path / "absent.log") == ("unknown", "no console")
