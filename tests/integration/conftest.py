"""Integration fixtures: a private copy of the project and a private state directory per
test session, so tests never touch a developer's packer/ or output/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.project import copy_tree

REPO = Path(__file__).resolve().parents[2]


class Builder:
    """Runs the real `builder` CLI in a project copy with its own state directory."""

    def __init__(self, root: Path, state: Path):
        self.root = root
        self.state = state
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict:
        return dict(os.environ, BUILDER_STATE=str(self.state), **self.extra_env)

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "builder", *args], cwd=self.root,
                              env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
        proc.seconds = time.monotonic() - started
        sys.stderr.write(proc.stderr)
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        # SIGINT at its default in the child, as for a job started from a terminal: a run of
        # this suite in the background of a non-interactive shell inherits SIGINT ignored,
        # and the interrupt test's Ctrl-C would then never reach builder.
        return subprocess.Popen([sys.executable, "-m", "builder", *args], cwd=self.root,
                                env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                 signal.SIG_DFL))


def qemu_processes(marker: str) -> list[str]:
    out = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "qemu-system" in cmd and marker in cmd:
            out.append(cmd)
    return out


@pytest.fixture(scope="session")
def shared_bases(tmp_path_factory) -> Path:
    """One local base and one package layer per role per test session, shared by every
    state directory (link_shared)."""
    root = tmp_path_factory.mktemp("shared")
    for cache in ("bases", "layers"):
        (root / cache).mkdir()
    return root


def link_shared(state: Path, shared: Path) -> None:
    for cache in ("bases", "layers"):
        (state / cache).symlink_to(shared / cache, target_is_directory=True)


DATA_TIER = ("haproxy", "etcd-patroni", "redis")


@pytest.fixture(scope="session")
def baked(tmp_path_factory, shared_bases):
    """haproxy, etcd-patroni and redis baked for real, two at a time, once per session."""
    root = copy_tree(tmp_path_factory.mktemp("data-tier-project"), REPO)
    state = tmp_path_factory.mktemp("data-tier-state")
    link_shared(state, shared_bases)
    builder = Builder(root, state)
    proc = builder.run("bake", *DATA_TIER, "--target", "qemu", "--parallel", "2", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return builder, json.loads(proc.stdout)


@pytest.fixture
def make_builder(tmp_path_factory, shared_bases):
    def make(name: str) -> Builder:
        root = copy_tree(tmp_path_factory.mktemp(f"{name}-project"), REPO)
        state = tmp_path_factory.mktemp(f"{name}-state")
        link_shared(state, shared_bases)
        return Builder(root, state)
    return make


def post_boot_failures(builder: Builder, cluster, roles: tuple[str, ...] | None,
                       junit_dir: Path) -> dict:
    """Each booted node of `roles` (None: every node) checked by its image suite's boot
    phase, all nodes at once (the suites wait on SSH round trips more than on CPU): what
    failed."""
    from concurrent.futures import ThreadPoolExecutor

    from builder.bake import imagetest
    from builder.cluster.state import USER

    def check(node) -> tuple[str, object]:
        junit = junit_dir / f"{node.name}.xml"
        rc = imagetest.run(Path(node.artifact) / "spec.json", "boot",
                           f"{USER}@127.0.0.1:{node.ssh_port}", cluster.key, None, junit,
                           builder.root)
        return node.name, rc if rc == 0 or not junit.exists() else junit.read_text()[-3000:]

    nodes = [n for n in cluster.nodes if roles is None or n.role in roles]
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return {name: failure for name, failure in pool.map(check, nodes) if failure != 0}


def builder_json(builder: Builder, *args: str, timeout: float = 1800) -> dict:
    """`builder ARGS... --json`, which must succeed, parsed."""
    proc = builder.run(*args, "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def fetch(url: str, *, body: bytes | None = None, headers: dict | None = None) -> tuple:
    """(status, text) of one HTTP request from the host (to a forwarded 127.0.0.1 port)."""
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode()


def graphql_shop(port: int) -> dict:
    """Saleor's readiness query through HAProxy :80 (forwarded to `port`)."""
    status, text = fetch(f"http://127.0.0.1:{port}/graphql/",
                         body=json.dumps({"query": "{ shop { name } }"}).encode(),
                         headers={"Content-Type": "application/json"})
    assert status == 200, text
    return json.loads(text)

