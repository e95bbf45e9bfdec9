"""Integration fixtures: a private copy of the project and a private state directory per
test session, so tests never touch a developer's packer/ or output/. Every image is baked
once per session and shared by every module that boots it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import registry as oci
import yaml

from builder.bake import base as bases
from builder.bench.aptproxy import AptProxy
from builder.spec.project import copy_tree

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


SALEOR_TIER = ("saleor-api", "saleor-dashboard", "storefront")
# What each stand-in's bundle is made from, and how (tests/fixtures/*-standin: the real
# sources are unreachable here).
# The saleor bundle carries its migrated schema (--schema-dump, made with the host's
# PostgreSQL and a CPython 3.13 for the image's wheels): its first node restores it, and the
# container release after it migrates the then non-empty database.
def _python(minor: str) -> str:
    """A CPython X.Y that runs here: on PATH, else one of pyenv's (a pyenv shim on PATH
    answers only for the versions pyenv has selected)."""
    candidates = [shutil.which(f"python{minor}"),
                  *sorted(map(str, Path.home().glob(f".pyenv/versions/{minor}*/bin/python3")))]
    for python in filter(None, candidates):
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == minor:
            return python
    return f"python{minor} (none runs here)"


PYTHON_313 = _python("3.13")
STAND_INS = {
    "saleor": ("saleor-standin", ["--runtime", "system", "--python-version", "3.13",
                                  "--schema-dump", "--build-python", PYTHON_313]),
    "dashboard": ("dashboard-standin", []),
    "storefront": ("storefront-standin", []),
}
# The container image is a newer release than the bundles: its first node migrates.
CONTAINER_VERSION = "0.2.0"


def _standin_rootfs(builder: Builder, work: Path) -> Path:
    made = builder_json(builder, "vendor", "saleor", "--version", CONTAINER_VERSION, "--source",
                        str(REPO / "tests" / "fixtures" / "saleor-standin"), "--dir",
                        str(work), "--runtime", "system", "--python-version", "3.13",
                        timeout=900)
    return oci.build_saleor_standin_rootfs(Path(made["path"]), work / "rootfs.tar")


@pytest.fixture(scope="session")
def container_image(baked, tmp_path_factory):
    """saleor-api baked with install: container, pinned by digest, in a project copy sharing
    the data tier's state: a stand-in of the official image built with mmdebstrap, pushed to
    a local TLS registry (Debian's docker-registry) and pulled by podman in the bake VM
    through the environment's registry mirror, our test CA trusted through
    `ca_certificates`. The environment sets every other mirror too (apt: a caching mirror of
    Debian's on 127.0.0.1, which its package layer is fetched through; pip and npm), so the
    sealed image can be shown to keep none of them. Baked before the bundles, so `cluster
    up` boots the bundle image (the newest) and the swap names this one. Returns the
    builder of that project, the bake report, the digest and the environment file."""
    builder, _ = baked
    work = tmp_path_factory.mktemp("oci")
    started = time.monotonic()
    rootfs = _standin_rootfs(builder, work)
    root = copy_tree(tmp_path_factory.mktemp("container-project"), REPO)
    spec = root / "images" / "saleor-api.yaml"
    text = spec.read_text()
    assert "install: bundle\n" in text and 'tag: "3.23.28"' in text
    debian = bases.DEBIAN_MIRROR.removesuffix("/debian")
    with oci.Registry(work / "registry", oci.make_tls(work / "tls")) as reg, \
            AptProxy(work / "apt-cache", upstream=debian) as apt:
        digest = oci.push_image(reg, "saleor/saleor", CONTAINER_VERSION, rootfs,
                                oci.saleor_standin_config(CONTAINER_VERSION))
        print(f"stand-in image built and pushed in {time.monotonic() - started:.0f} s")
        spec.write_text(text.replace("install: bundle\n", "install: container\n").replace(
            'tag: "3.23.28"', f'tag: "{CONTAINER_VERSION}"\n  digest: {digest}'))
        env = root / "mirrors.yaml"
        mirror = f"http://10.0.2.2:{apt.port}"  # the build host's 127.0.0.1, from the VM
        env.write_text(yaml.safe_dump({
            "name": "mirrors",
            "mirrors": {"apt": f"{mirror}/debian", "pip": f"{mirror}/pypi/simple",
                        "npm": f"{mirror}/npm/", "registries": {"ghcr.io": reg.vm_address()}},
            "ca_certificates": [str(reg.ca)]}))
        swapper = Builder(root, builder.state)
        report = builder_json(swapper, "bake", "saleor-api", "--target", "qemu", "--env",
                              str(env), timeout=3600)
        assert apt.server.misses > 0, "the package layer was not fetched through the mirror"
    return swapper, report, digest, env


@pytest.fixture(scope="session")
def saleor_images(baked, container_image, tmp_path_factory):
    """Stand-in bundles in a private vendor/, and the three Saleor-tier roles baked from them
    next to the data tier's images."""
    builder, _ = baked
    vendor = tmp_path_factory.mktemp("vendor")
    for app, (source, options) in STAND_INS.items():
        made = builder_json(builder, "vendor", app, "--version", "0.1.0", "--source",
                            str(REPO / "tests" / "fixtures" / source), "--dir", str(vendor),
                            *options, timeout=900)
        assert made["stand_in"] is True, made
    builder.extra_env["BUILDER_VENDOR"] = str(vendor)
    baked_tier = builder_json(builder, "bake", *SALEOR_TIER, "--target", "qemu",
                              "--parallel", "2", timeout=3600)
    return builder, baked_tier


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
    phase, two nodes at a time (this machine's two cores): what failed. Every check costs
    the guest a login, sudo and often a Python start, so the suites are CPU-bound: the HA
    cluster's four took 562 s all at once and 567 s in a row (2026-12-03), and all at once
    starved a primary's Patroni until its watchdog reset the VM. Two at a time is not
    timed yet."""
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
    with ThreadPoolExecutor(max_workers=POST_BOOT_WORKERS) as pool:
        return {name: failure for name, failure in pool.map(check, nodes) if failure != 0}


POST_BOOT_WORKERS = 2


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


# Celery beat as `pgrep -f` patterns: in a bundle's venv, and in the official image's.
BEAT = "^/opt/saleor/venv/bin/python3? /opt/saleor/venv/bin/celery .*beat"
CONTAINER_BEAT = "^/app/.venv/bin/python3? /app/.venv/bin/celery .*beat"


def beats(cluster) -> dict[str, int]:
    """Celery beat processes on each running saleor-api node, either install method."""
    from builder.cluster.state import USER
    from builder.cluster.vm import ssh

    counted = {}
    for node in cluster.nodes:
        if node.role != "saleor-api" or not cluster.vm(node).running():
            continue
        proc = ssh(cluster.vm(node), cluster.key, USER,
                   f"pgrep -c -f '{BEAT}|{CONTAINER_BEAT}' || true", timeout=60)
        assert proc.returncode == 0, f"{node.name}: {proc.stderr}"
        counted[node.name] = int(proc.stdout)
    return counted


def recent_heartbeats(dsn: str) -> int:
    """Heartbeat rows the worker wrote in the last 40 s, counted after waiting 45 s: one
    beat sends the task every 10 s, so about 4; two beats would make about 8."""
    import psycopg

    time.sleep(45)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return conn.execute("SELECT count(*) FROM standin_heartbeat "
                            "WHERE at > now() - interval '40 seconds'").fetchone()[0]


def graphql_shop(port: int) -> dict:
    """Saleor's readiness query through HAProxy :80 (forwarded to `port`)."""
    status, text = fetch(f"http://127.0.0.1:{port}/graphql/",
                         body=json.dumps({"query": "{ shop { name } }"}).encode(),
                         headers={"Content-Type": "application/json"})
    assert status == 200, text
    return json.loads(text)

