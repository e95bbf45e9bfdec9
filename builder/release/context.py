"""What every release command needs: the project, its roles, the environment, the registry
and AWS clients for that environment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder import spec as specs
from builder.errors import UserError
from builder.registry import Registry, default_path
from builder.release.awsclient import Aws
from builder.spec.project import Project, find_project

TARGET = "aws"


@dataclasses.dataclass
class Context:
    project: Project
    roles: dict[str, specs.RoleSpec]
    env: specs.Environment
    registry: Registry
    aws: Aws

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def channel_names(self) -> list[str]:
        return list(self.env.aws.channels)

    def check_role(self, role: str) -> str:
        if role not in self.roles:
            raise UserError(f"unknown role {role!r} (known: {', '.join(self.roles)})",
                            field="ROLE")
        return role

    def check_channel(self, channel: str) -> str:
        if channel not in self.env.aws.channels:
            raise UserError(f"unknown channel {channel!r} (environment {self.env.name} has: "
                            f"{', '.join(self.env.aws.channels)})", field="--channel")
        return channel

    def parameter(self, role: str, channel: str) -> str:
        """The SSM parameter holding a channel's AMI id: /<prefix>/<env>/<role>/<channel>."""
        return f"{self.env.aws.ssm_prefix.rstrip('/')}/{self.env.name}/{role}/{channel}"


def load(env_name: str | None, images: Path | None) -> Context:
    project = find_project(images)
    roles = specs.load_roles(project)
    env = specs.load_environment(env_name, project, roles)
    registry = Registry(default_path(project.state.resolve()))
    return Context(project=project, roles=roles, env=env, registry=registry, aws=Aws(env.aws))
