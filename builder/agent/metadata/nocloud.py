"""Identity from cloud-init's instance-data.json (NoCloud locally; any datasource)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from builder.agent.metadata import Identity

INSTANCE_DATA = Path("/run/cloud-init/instance-data.json")


def _own_address() -> str | None:
    """The source address the kernel picks for a non-local destination; no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP sends nothing
            return sock.getsockname()[0]
    except OSError:
        return None


def read(path: Path = INSTANCE_DATA) -> Identity | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    v1 = data.get("v1", {})
    platform = v1.get("platform") or v1.get("cloud_name") or "unknown"
    address = None
    ds = data.get("ds", {})
    meta = ds.get("meta_data") or ds.get("meta-data") or {}
    if isinstance(meta, dict):
        address = meta.get("local-ipv4") or meta.get("local_ipv4")
    return Identity(
        instance_id=v1.get("instance_id") or "unknown",
        hostname=v1.get("local_hostname") or socket.gethostname(),
        address=address or _own_address(),
        source="ec2" if platform in ("ec2", "aws") else f"cloud-init:{platform}",
        region=v1.get("region"),
    )


def fallback() -> Identity:
    return Identity(instance_id=socket.gethostname(), hostname=socket.gethostname(),
                    address=_own_address(), source="host")
