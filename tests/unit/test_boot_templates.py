"""The gate renders every boot-time role template as the node agent would (its contexts, its
StrictUndefined) and checks the result with the program that reads it: an undefined variable
is bad input (one line naming the template, exit 2), a config the program refuses fails the
role's boot-templates check (exit 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.gate import configcheck

from .helpers import run_builder

HAVE_HAPROXY = shutil.which("haproxy") is not None


def _append(project: Path, rel: str, text: str) -> None:
    path = project / "templates" / rel
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize(("rel", "text", "role", "expected"), [
    ("haproxy/haproxy.cfg.j2", "    # {{ no_such_value }}\n", "haproxy",
     "templates/haproxy/haproxy.cfg.j2: 'no_such_value' is undefined at boot"),
    ("etcd-patroni/patroni.yml.j2", "# {{ node.no_such_key }}\n", "etcd-patroni",
     "templates/etcd-patroni/patroni.yml.j2: 'dict object' has no attribute 'no_such_key'"),
    # Only the container install renders this branch: both methods are rendered.
    ("saleor-api/saleor.env.j2", "{% if rsa_key_secret %}{{ oops }}{% endif %}\n", "saleor-api",
     "templates/saleor-api/saleor.env.j2: 'oops' is undefined at boot (container install)"),
    ("redis/redis.conf.j2", "{% if %}\n", "redis", "templates/redis/redis.conf.j2: line "),
])
def test_a_template_the_agent_could_not_render_is_refused_in_one_line(project, rel, text, role,
                                                                      expected):
    _append(project, rel, text)
    proc = run_builder(["validate", role, "--target", "qemu"], project)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("builder: error: " + expected), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def _boot_check(project: Path, role: str) -> dict:
    proc = run_builder(["validate", role, "--target", "aws", "--json"], project)
    report = json.loads(proc.stdout)
    [check] = [c for c in report["checks"] if c["name"] == "boot-templates"]
    assert proc.returncode == (0 if check["ok"] else 1), proc.stderr
    return check


@pytest.mark.skipif(not HAVE_HAPROXY, reason="haproxy is not installed")
def test_a_config_haproxy_refuses_fails_the_role(project):
    _append(project, "haproxy/haproxy.cfg.j2", "    no-such-keyword on\n")
    check = _boot_check(project, "haproxy")
    assert not check["ok"] and check["detail"].startswith("haproxy.cfg: haproxy: "), check


def test_yaml_that_does_not_parse_fails_the_role(project):
    _append(project, "etcd-patroni/patroni.yml.j2", "  bad: [unclosed\n")
    check = _boot_check(project, "etcd-patroni")
    assert not check["ok"] and check["detail"].startswith("patroni.yml: not YAML"), check


def test_the_shipped_templates_pass_and_say_how_they_were_checked(project):
    details = {role: _boot_check(project, role)["detail"]
               for role in ("etcd-patroni", "haproxy", "saleor-api")}
    assert details["etcd-patroni"].startswith("etcd.env: environment-file syntax; patroni.yml: "
                                              "YAML")
    assert details["haproxy"] == ("haproxy.cfg: haproxy -c" if HAVE_HAPROXY else
                                  "haproxy.cfg: not checked (haproxy not installed)")
    assert "bundle/saleor.env: environment-file syntax" in details["saleor-api"]
    assert "container/saleor.env: environment-file syntax" in details["saleor-api"]


@pytest.mark.parametrize(("text", "problem"), [
    ("A=1\n# comment\n\nB=\"two\nlines\"\nC=3\n", None),
    ("A=1\nnot an assignment\n", "x.env line 2: expected NAME=value"),
    ("A=\"never closed\nB=2\n", "x.env line 1: quote never closed"),
    ("1A=x\n", "x.env line 1: expected NAME=value"),
])
def test_environment_files_are_read_as_systemd_reads_them(tmp_path, text, problem):
    path = tmp_path / "x.env"
    path.write_text(text)
    if problem is None:
        assert configcheck.check(path) == "environment-file syntax"
    else:
        with pytest.raises(configcheck.ConfigError, match=problem):
            configcheck.check(path)
