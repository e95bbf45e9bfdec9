"""Where am I, who am I: one module per metadata source, each returning an Identity."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Identity:
    instance_id: str
    hostname: str
    address: str | None           # own private IPv4 address
    source: str                   # which metadata source answered
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    region: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def discover(timeout: float = 2.0, instance_data=None) -> Identity:
    """cloud-init's instance data first (every datasource), then EC2 IMDSv2 directly."""
    from builder.agent.metadata import ec2, nocloud

    found = nocloud.read(instance_data or nocloud.INSTANCE_DATA)
    if found is not None and found.source != "ec2":
        return found
    return ec2.read(timeout=timeout) or found or nocloud.fallback()
