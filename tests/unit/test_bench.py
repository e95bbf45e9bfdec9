"""`python -m builder.bench`: parts by name, results as JSON, goals judged on the median."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from builder import bench
from builder.bench import __main__ as runner
from builder.bench import render as render_part

from .helpers import REPO


def test_parts_are_the_modules_of_the_package():
    assert bench.part_names()[0] == "render"
    assert "common" not in bench.part_names()
    module = bench.load_part("render")
    assert module.available() is None


def test_unknown_part_is_bad_input():
    proc = subprocess.run([sys.executable, "-m", "builder.bench", "nosuch"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"builder bench: error: PART: unknown bench part 'nosuch' (known: "
        f"{', '.join(bench.part_names())})"]


def test_list_names_every_part():
    proc = subprocess.run([sys.executable, "-m", "builder.bench", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == bench.part_names()


@pytest.fixture
def fake_runs(monkeypatch):
    """Canned timings instead of real CLI runs: validate of qemu 2.0, 2.5, 1.0 s..."""
    timings = {"qemu": iter([9.0, 2.0, 2.5, 1.0]), "aws": iter([9.0, 3.5, 3.0, 4.0])}

    def one_run(target, root, out):
        report = {"ok": True, "checks": [
            {"role": "redis", "name": "packer-validate", "ok": True, "skipped": False,
             "detail": ""},
            {"role": "redis", "name": "user-data-schema", "ok": True, "skipped": True,
             "detail": "cloud-init not installed"}]}
        validate = next(timings[target])
        return {"render": 0.25, "validate": validate, "validate_uncached": validate + 2,
                "total": 0.25 + validate, "total_uncached": 2.25 + validate, "report": report,
                "cpu": {"render": 0.2, "validate": 1.0, "validate_uncached": 3.0,
                        "total": 1.2, "total_uncached": 3.2}}

    monkeypatch.setattr(render_part, "_one_run", one_run)


def test_render_part_reports_median_min_and_the_goal(fake_runs, tmp_path):
    result = CliRunner().invoke(runner.main, ["render", "--repeat", "3", "--warmup", "1",
                                              "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "render.json").read_text())
    assert data["part"] == "render" and data["goal_seconds"] == 3.0
    qemu, aws = data["targets"]["qemu"], data["targets"]["aws"]
    # The warm-up (9 s) is not measured.
    assert qemu["validate"]["samples"] == [2.0, 2.5, 1.0]
    assert qemu["total"]["median"] == 2.25 and qemu["total"]["min"] == 1.25
    assert qemu["goal_met"] is True
    # Judged on validate as a user runs it again; every check run is reported beside it.
    assert qemu["total_uncached"]["median"] == 4.25
    assert aws["total"]["median"] == 3.75 and aws["goal_met"] is False
    assert data["goal_met"] is False
    assert data["total"]["samples"] == [6.0, 6.0, 5.5]
    assert aws["skipped_checks"] == ["user-data-schema (cloud-init not installed)"]
    assert "MISSED" in result.output and "aws" in result.output


def test_check_makes_a_missed_goal_fail(fake_runs, tmp_path):
    result = CliRunner().invoke(runner.main, ["render", "--repeat", "3", "--check",
                                              "--results", str(tmp_path)])
    assert result.exit_code == 1


def test_an_outage_still_open_counts_up_to_the_end_of_the_window():
    """The seed's proxy leaves a session to a killed primary hanging: no write is taken
    after the kill, which is the longest outage, not none."""
    from builder.cluster.writer import Ack, Writer

    writer = Writer("postgresql://unused")
    writer.acks = [Ack(i, float(i), "10.0.0.1") for i in range(10)]
    assert writer.outage_around(9.5) == 0.0
    assert writer.outage_around(9.5, until=69.5) == 60.5
    writer.acks.append(Ack(10, 30.0, "10.0.0.2"))
    assert writer.outage_around(9.5, until=69.5) == 39.5
