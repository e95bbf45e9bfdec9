"""`builder-agent`: configure this instance from its metadata, once per boot."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from builder.agent.metadata import discover

ROLE_FILE = Path("/etc/builder/role.json")
IMAGE_FILE = Path("/etc/builder/image.json")
NODE_FILE = Path("/etc/builder/node.yaml")
STATUS_FILE = Path("/run/builder/agent.json")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def status() -> dict:
    """What the agent knows about this instance, without changing anything."""
    import yaml

    identity = discover()
    node = {}
    if NODE_FILE.is_file():
        node = yaml.safe_load(NODE_FILE.read_text()) or {}
    return {
        "image": _load_json(IMAGE_FILE),
        "role": _load_json(ROLE_FILE).get("role"),
        "identity": identity.as_dict(),
        "configured": bool(node),
        "cluster": node.get("cluster"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="builder-agent", description=__doc__)
    parser.add_argument("command", choices=["boot", "status"], nargs="?", default="status")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = status()
    if args.command == "boot":
        if not report["configured"]:
            report["state"] = "unconfigured"
            report["message"] = f"no {NODE_FILE}: this instance was booted without user-data"
        else:
            report["state"] = "identified"
        report["seconds"] = round(time.monotonic() - started, 2)
        STATUS_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATUS_FILE.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
