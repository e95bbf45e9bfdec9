"""Every kind of bad input, through the real `builder` command: exit status 2, one line on
stderr naming the file (and line) and the field, no traceback, and nothing written."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import copy_project, listing, run_builder


def _append(rel: str, text: str) -> Callable[[Path], int]:
    """Append text to a project file; the break reports the line the text starts on."""
    def brk(root: Path) -> int:
        path = root / rel
        before = path.read_text()
        if not before.endswith("\n"):
            before += "\n"
        path.write_text(before + text)
        return before.count("\n") + 1
    return brk


def _replace(rel: str, old: str, new: str) -> Callable[[Path], int]:
    """Replace old (which must occur once) by new; the break reports old's line."""
    def brk(root: Path) -> int:
        path = root / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel} no longer holds {old!r}: update this test"
        path.write_text(text.replace(old, new))
        return text[: text.index(old)].count("\n") + 1
    return brk


def _write(rel: str, text: str) -> Callable[[Path], int]:
    def brk(root: Path) -> int:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return 0
    return brk


def _remove(rel: str) -> Callable[[Path], int]:
    def brk(root: Path) -> int:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return 0
    return brk


def _nothing(root: Path) -> int:
    return 0


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    # Text the one error line must contain; "{line}" is the line the break reported.
    expect: tuple[str, ...]
    brk: Callable[[Path], int] = _nothing

    def expected(self, line: int) -> list[str]:
        return [e.format(line=line) for e in self.expect]


ALL = ("--all",)
CASES = [
    # -- role specs
    Case("malformed-yaml", ALL, ("images/redis.yaml:{line}: ", "malformed YAML"),
         _append("images/redis.yaml", "notes: a: b\n")),
    Case("malformed-yaml-unclosed", ALL, ("images/haproxy.yaml:", "malformed YAML"),
         _replace("images/haproxy.yaml", "ports: [80,", "ports: [[80,")),
    Case("unknown-field", ALL, ("images/redis.yaml:{line}: colour: unknown field",),
         _append("images/redis.yaml", "colour: blue\n")),
    Case("unknown-nested-field", ALL,
         ("images/redis.yaml:{line}: targets.qemu.gpus: unknown field",),
         _replace("images/redis.yaml", "    memory: 1024\n", "    gpus: 1\n")),
    Case("wrong-type-int", ALL,
         ("images/redis.yaml:{line}: targets.qemu.memory: expected an integer, got str",),
         _replace("images/redis.yaml", "    memory: 1024\n", "    memory: lots\n")),
    Case("wrong-type-list", ALL, ("images/redis.yaml:{line}: ports: expected a list, got int",),
         _replace("images/redis.yaml", "ports: [6379]\n", "ports: 6379\n")),
    Case("wrong-type-nested-list", ALL,
         ("images/saleor-api.yaml:{line}: files[0]: expected a mapping, got str",),
         _replace("images/saleor-api.yaml", "  - src: builder-singleton\n"
                  "    dest: /usr/local/sbin/builder-singleton\n    mode: \"0755\"\n",
                  "  - builder-singleton\n")),
    Case("bad-value", ALL, ("images/redis.yaml:{line}: version: expected a version like 1.2.3",),
         _replace("images/redis.yaml", "version: 1.0.0\n", "version: '1.0'\n")),
    Case("bad-enum", ALL, ("images/redis.yaml:{line}: base.suite: must be one of",),
         _replace("images/redis.yaml", "  suite: trixie\n", "  suite: jessie\n")),
    Case("role-name-mismatch", ALL, ("images/redis.yaml:{line}: role: must match the file name",),
         _replace("images/redis.yaml", "role: redis\n", "role: cache\n")),
    Case("duplicate-key", ALL, ("images/redis.yaml:{line}: packages: duplicate key",),
         _append("images/redis.yaml", "packages: [redis-tools]\n")),
    Case("missing-template-file", ALL,
         ("images/redis.yaml:", "templates[0]: no such file templates/redis/redis.conf.j2"),
         _remove("templates/redis/redis.conf.j2")),
    Case("missing-files-src", ALL,
         ("images/saleor-api.yaml:", "files[2].src: no such file "
          "templates/saleor-api/saleor-beat.service"),
         _remove("templates/saleor-api/saleor-beat.service")),
    Case("missing-script", ALL,
         ("images/etcd-patroni.yaml:", "scripts[0]: no such file"),
         _remove("templates/etcd-patroni/neutralize.sh")),
    Case("missing-test-suite", ALL,
         ("images/redis.yaml:", "tests: no such test suite directory tests/images/redis"),
         _remove("tests/images/redis")),
    # -- command line
    Case("unknown-role", ("nosuch",), ("ROLE: unknown role 'nosuch'",)),
    Case("role-and-all", ("--all", "redis"), ("ROLE", "not both")),
    Case("no-role", (), ("ROLE", "at least one role")),
    Case("unknown-target", ("--all", "--target", "gcp"), ("--target", "unknown target 'gcp'")),
    Case("bad-flag", ("--all", "--bogus"), ("--bogus",)),
    Case("flag-without-value", ("--all", "--target"), ("--target",)),
    Case("no-images-dir", ("--all", "--images", "nowhere"), ("nowhere", "--images")),
    # -- templates (StrictUndefined: a typo is an error, never an empty string)
    Case("undefined-in-added-template", ALL,
         ("cloud-init/redis.yaml.j2:3: no_such_setting: undefined variable",
          "images/redis.yaml"),
         _write("cloud-init/redis.yaml.j2",
                "#cloud-config\n# {{ role.role }}\nhostname: {{ no_such_setting }}\n")),
    Case("undefined-attribute-in-include", ALL,
         ("templates/packer/provisioners.pkr.hcl.j2:{line}: no_such_field: undefined variable",),
         _append("templates/packer/provisioners.pkr.hcl.j2", "  # {{ role.no_such_field }}\n")),
    Case("template-syntax", ALL,
         ("templates/provision/seal.sh.j2:{line}: ", "template syntax"),
         _append("templates/provision/seal.sh.j2", "{% if %}\n")),
    # -- environments
    Case("env-role-without-spec", ("--all", "--env", "stage"),
         ("environments/stage.yaml:4: nodes.mongo: names role 'mongo', which has no spec",),
         _write("environments/stage.yaml", "name: stage\nnodes:\n  redis: 1\n  mongo: 2\n")),
    Case("env-unknown-name", ("--all", "--env", "nosuch"),
         ("environments/nosuch.yaml: --env: no such environment file",)),
    Case("env-file-wrong-type", ("--all", "--env", "bad.yaml"),
         ("bad.yaml:3: nodes.redis: expected an integer, got str",),
         _write("bad.yaml", "name: bad\nnodes:\n  redis: two\n")),
    Case("env-file-malformed", ("--all", "--env", "bad.yaml"),
         ("bad.yaml:2: malformed YAML",),
         _write("bad.yaml", "name: bad\nnodes: redis: 1\n")),
    Case("nul-byte-in-yaml", ("--all", "--env", "bad.yaml"),
         ("bad.yaml:2: malformed YAML: unacceptable character #x0000",),
         _write("bad.yaml", "name: bad\ncluster_name: sh\x00op\n")),
    Case("hostile-mirror-url", ("--all", "--env", "bad.yaml"),
         ("bad.yaml:2: mirrors.apt: expected an http(s) URL",),
         _write("bad.yaml", "name: bad\nmirrors: {apt: \"http://m/debian';touch${IFS}/tmp/x;'\"}\n")),
    Case("env-unknown-field", ("--all", "--env", "bad.yaml"),
         ("bad.yaml:2: aws.zone: unknown field",),
         _write("bad.yaml", "name: bad\naws: {zone: a}\n")),
]


@pytest.fixture(scope="session")
def earlier_render(tmp_path_factory) -> Path:
    """An --out directory holding a complete earlier render of both targets."""
    root = copy_project(tmp_path_factory.mktemp("earlier") / "project")
    out = root.parent / "out"
    for target in ("qemu", "aws"):
        proc = run_builder(["render", "--all", "--target", target, "--out", str(out)], root)
        assert proc.returncode == 0, proc.stderr
    return out


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("builder: error: ")
    return lines[0]


@pytest.mark.parametrize("out_state", ["absent", "earlier-render"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_render_rejects_bad_input(case: Case, out_state: str, project: Path, tmp_path: Path,
                                  earlier_render: Path):
    line = case.brk(project)
    out = tmp_path / "out"
    if out_state == "earlier-render":
        shutil.copytree(earlier_render, out)
    out_before, project_before = listing(out), listing(project)

    proc = run_builder(["render", "--out", str(out), *case.args], project)

    error = _one_error_line(proc)
    for text in case.expected(line):
        assert text in error
    assert proc.stdout == ""
    assert listing(out) == out_before
    assert listing(project) == project_before


VALIDATE_CASES = [c for c in CASES if c.id in {
    "malformed-yaml", "unknown-field", "wrong-type-int", "missing-template-file",
    "unknown-role", "unknown-target", "bad-flag", "undefined-in-added-template",
    "env-role-without-spec"}]


@pytest.mark.parametrize("case", VALIDATE_CASES, ids=[c.id for c in VALIDATE_CASES])
def test_validate_rejects_bad_input_before_any_check(case: Case, project: Path):
    line = case.brk(project)
    proc = run_builder(["validate", *case.args], project)
    error = _one_error_line(proc)
    for text in case.expected(line):
        assert text in error
    assert proc.stdout == ""


def test_a_good_render_after_a_bad_one_replaces_the_earlier_render(project: Path,
                                                                    tmp_path: Path):
    """The other half of all-or-nothing: a render that succeeds does write, completely."""
    out = tmp_path / "out"
    assert run_builder(["render", "--all", "--out", str(out)], project).returncode == 0
    stale = out / "qemu" / "redis" / "stale-file"
    stale.write_text("from an older render\n")
    _append("images/redis.yaml", "colour: blue\n")(project)
    assert run_builder(["render", "redis", "--out", str(out)], project).returncode == 2
    assert stale.exists()
    _replace("images/redis.yaml", "colour: blue\n", "")(project)
    proc = run_builder(["render", "redis", "--out", str(out)], project)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    assert (out / "qemu" / "redis" / "redis.pkr.hcl").is_file()


@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_an_out_that_cannot_hold_a_render_is_one_line(where: str, project: Path,
                                                       tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    out = blocker if where == "a-file" else blocker / "out"
    before = listing(tmp_path)
    proc = run_builder(["render", "--all", "--out", str(out)], project)
    error = _one_error_line(proc)
    assert "--out" in error and str(out) in error
    after = listing(tmp_path)
    # Only builder's own state directory may have appeared; nothing next to --out.
    assert {k: v for k, v in after.items() if not k.startswith("state/")} == before


@pytest.mark.parametrize("group", [[], ["cluster"], ["release"], ["vendor"]])
def test_a_bare_group_prints_its_help(group: list[str], project: Path):
    proc = run_builder(group, project)
    assert proc.returncode == 0, proc.stderr
    usage = proc.stdout.splitlines()[0]
    assert usage.startswith("Usage: ") and usage.endswith(
        " ".join([*group, "[OPTIONS] COMMAND [ARGS]..."]))
    assert "Commands:" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("command, where", [
    # A spec error: the file, its line and the field.
    (("validate", "redis", "--json"),
     {"file": "images/redis.yaml", "field": "colour", "message": "unknown field"}),
    # An option click refuses: the option.
    (("bake", "redis", "--parallel", "many", "--json"),
     {"file": None, "line": None, "field": "--parallel"}),
    (("render", "no-such-role", "--json"),
     {"file": None, "line": None, "field": "ROLE"}),
])
def test_with_json_an_error_is_also_a_json_object_on_stdout(command, where, project: Path):
    import json

    if command[0] == "validate":
        _append("images/redis.yaml", "colour: blue\n")(project)
    proc = run_builder(list(command), project)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "input" and error["exit_status"] == 2
    assert {k: error[k] for k in where if k != "message"} == \
        {k: v for k, v in where.items() if k != "message"}
    assert where.get("message", error["message"]) in error["message"]
    assert error["message"] in line  # the same error as the line on stderr
    if error["file"]:
        assert isinstance(error["line"], int) and f"{error['file']}:{error['line']}" in line


def test_without_json_an_error_leaves_stdout_empty(project: Path):
    proc = run_builder(["render", "no-such-role"], project)
    assert proc.returncode == 2 and proc.stdout == ""
