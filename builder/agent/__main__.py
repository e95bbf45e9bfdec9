"""`builder-agent`: configure this instance from its metadata, once per boot.

`boot` writes /run/builder/agent.json (state ready, failed or unconfigured, with timings)
and exits 1 only when the boot failed; `status` changes nothing; `refresh` boots again only
if discovery sees other peers than the last boot (HAProxy's timer); `etcd-leader-guard`
runs until stopped on etcd-patroni nodes (builder/agent/etcd_leader.py); `leave` hands over
the primary and leaves etcd when an etcd-patroni node powers off (builder/agent/leave.py);
`lifecycle-watch` runs that leave on AWS when the Auto Scaling group terminates the instance,
then completes the group's lifecycle action (builder/agent/lifecycle.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from builder.agent.announce import announce, announce_leave
from builder.agent.boot import IMAGE_FILE, ROLE_FILE, boot, load_json, refresh
from builder.agent.config import NODE_FILE
from builder.agent.errors import AgentError
from builder.agent.metadata import discover, nocloud
from builder.agent.paths import ENV_VAR, Root
from builder.agent.services import Services


def status(root: Root | None = None) -> dict:
    """What the agent knows about this instance, without changing anything."""
    import yaml

    root = root or Root()
    identity = discover(instance_data=root(nocloud.INSTANCE_DATA))
    node = {}
    if root(NODE_FILE).is_file():
        node = yaml.safe_load(root(NODE_FILE).read_text()) or {}
    return {
        "image": load_json(root(IMAGE_FILE)),
        "role": load_json(root(ROLE_FILE)).get("role"),
        "identity": identity.as_dict(),
        "configured": bool(node),
        "cluster": node.get("cluster"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="builder-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["boot", "status", "refresh", "etcd-leader-guard",
                                                "leave", "lifecycle-watch"],
                        nargs="?", default="status")
    parser.add_argument("--root", help=f"prefix of every absolute path (default ${ENV_VAR} "
                        "or /): rehearse a boot into a directory")
    parser.add_argument("--dry-run-services", action="store_true",
                        help="record systemctl and other system commands instead of running "
                        "them; readiness checks are skipped")
    parser.add_argument("--patroni-url", help="etcd-leader-guard: this node's Patroni REST API")
    parser.add_argument("--etcd-url", default="http://127.0.0.1:2379",
                        help="etcd-leader-guard: this node's etcd client URL")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="lifecycle-watch: seconds between looks at IMDS (1 to 60)")
    args = parser.parse_args(argv)
    if args.command == "etcd-leader-guard":
        if not args.patroni_url:
            parser.error("etcd-leader-guard needs --patroni-url")
        from builder.agent.etcd_leader import guard

        guard(args.etcd_url, args.patroni_url, log=lambda line: print(line, flush=True))
        return 0
    root = Root(args.root)
    if args.command in ("leave", "lifecycle-watch"):
        from builder.agent import lifecycle
        from builder.agent.roles.etcd_patroni import leave_cluster

        if args.command == "leave":
            report = leave_cluster(root)
        else:
            report = lifecycle.watch(root, interval=args.interval,
                                     log=lambda line: print(f"lifecycle: {line}", flush=True))
        if root.is_system:
            announce_leave(report)
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "status":
        print(json.dumps(status(root), indent=2))
        return 0
    services = Services(dry_run=args.dry_run_services)
    if args.command == "refresh":
        try:
            result = refresh(root, services)
        except AgentError as exc:
            print(f"builder-agent refresh: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2))
        return 1 if result.get("state") == "failed" else 0
    report = boot(root, services)
    if root.is_system and not services.dry_run:
        announce(report)
    print(json.dumps(report, indent=2))
    return 1 if report["state"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
