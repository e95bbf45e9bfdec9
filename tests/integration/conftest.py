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


def post_boot_failures(builder: Builder, cluster, roles: tuple[str, ...], junit_dir: Path) -> dict:
    """Each booted node of `roles` checked by its image suite's boot phase: what failed."""
    from builder.bake import imagetest
    from builder.cluster.state import USER

    failed = {}
    for node in cluster.nodes:
        if node.role not in roles:
            continue
        junit = junit_dir / f"{node.name}.xml"
        rc = imagetest.run(Path(node.artifact) / "spec.json", "boot",
                           f"{USER}@127.0.0.1:{node.ssh_port}", cluster.key, None, junit,
                           builder.root)
        if rc != 0:
            failed[node.name] = junit.read_text()[-3000:] if junit.exists() else rc
    return failed


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


# ------------------------------------------------------------------ the shared stack
# One cluster of every role per test run: the HA tests and the Saleor-tier tests use the same
# VMs (booting them twice cost a whole cluster boot). Its modules run last, in this order, so
# the session-scoped stack is the last cluster up and no other module's VMs share the CPUs.
STACK_FILE = REPO / "tests" / "fixtures" / "stack.yaml"
STACK_ENV = "stack"
STACK_MODULES = ("test_cluster_qemu.py", "test_saleor_tier_qemu.py")
SALEOR_TIER = ("saleor-api", "saleor-dashboard", "storefront")
# What each stand-in's bundle is made from, and how.
STAND_INS = {
    "saleor": ("saleor-standin", ["--runtime", "system", "--python-version", "3.13"]),
    "dashboard": ("dashboard-standin", []),
    "storefront": ("storefront-standin", []),
}


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = item.path.name
        return STACK_MODULES.index(name) + 1 if name in STACK_MODULES else 0

    items.sort(key=rank)  # stable: every other module keeps its order


@pytest.fixture(scope="session")
def saleor_images(baked, tmp_path_factory):
    """Stand-in bundles in a private vendor/, and the three Saleor-tier roles baked from them
    next to the data tier's images."""
    builder, _ = baked
    vendor = tmp_path_factory.mktemp("vendor")
    for app, (source, options) in STAND_INS.items():
        made = builder_json(builder, "vendor", app, "--version", "0.1.0", "--source",
                            str(REPO / "tests" / "fixtures" / source), "--out", str(vendor),
                            *options, timeout=900)
        assert made["stand_in"] is True, made
    builder.extra_env["BUILDER_VENDOR"] = str(vendor)
    report = builder_json(builder, "bake", *SALEOR_TIER, "--target", "qemu", "--parallel", "2",
                          timeout=3600)
    return builder, report


@pytest.fixture(scope="session")
def stack(saleor_images):
    """`builder cluster up` of tests/fixtures/stack.yaml: (builder, up report, cluster, s)."""
    from builder.cluster.state import load

    builder, _ = saleor_images
    started = time.monotonic()
    up = builder.run("cluster", "up", "--env", str(STACK_FILE), "--json", "--timeout", "1800",
                     timeout=2700)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield builder, json.loads(up.stdout), load(builder.state, STACK_ENV), \
            time.monotonic() - started
    finally:
        down = builder.run("cluster", "down", "--env", str(STACK_FILE), timeout=300)
        assert down.returncode == 0, down.stderr
        assert not qemu_processes(str(builder.state / "cluster")), "VMs left running"
        assert not (builder.state / "cluster" / STACK_ENV).exists()
