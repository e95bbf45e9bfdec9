"""What the cluster tests do through the CLI, as an operator would: JSON out of a
command, the cluster's status, waiting until it is whole, a writer's progress."""

from __future__ import annotations

import json
import time

from builder.cluster import health
from builder.cluster.writer import Writer


def cli_json(builder, *args, timeout=1800):
    proc = builder.run(*args, "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def cluster_status(builder) -> dict:
    return cli_json(builder, "cluster", "status", timeout=300)


def wait_healthy(builder, timeout: float = 600) -> dict:
    """Status once there is one leader, every other DB node streams and etcd is healthy."""
    return health.wait_whole(lambda: cluster_status(builder), timeout, interval=5)[0]


def writing(writer: Writer, acks: int = 20) -> None:
    """Until the writer has `acks` acknowledged writes (30 s at most)."""
    deadline = time.monotonic() + 30
    while len(writer.acks) < acks:
        assert time.monotonic() < deadline, writer.errors[-5:]
        time.sleep(0.5)


def await_write_off(writer: Writer, moment: float, address: str, timeout: float,
                     what: str) -> None:
    """Until a write taken after `moment` was acknowledged by a server other than
    `address`."""
    deadline = time.monotonic() + timeout
    while not [a for a in writer.acked_after(moment) if a.server != address]:
        assert time.monotonic() < deadline, f"{what}: {writer.errors[-5:]}"
        time.sleep(1)
