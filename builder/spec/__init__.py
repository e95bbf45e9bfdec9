"""What the builder is told: role specs and environments, loaded into typed, validated
objects. One job per module:

roles.py        role specs (images/<role>.yaml): RoleSpec and its parts, loading, selection
environment.py  environments (built-in `local`, environments/<name>.yaml): Environment
fields.py       field shapes and checks both share
typed.py        YAML documents into frozen dataclasses, errors naming file, line and field
project.py      where a project's specs, templates and test suites live

The names callers use are re-exported here: `from builder import spec as specs`.
"""

from builder.spec.environment import (
    FIRST_NODE_HOST,
    LOCAL,
    AwsEnvironment,
    Discovery,
    Environment,
    Mirrors,
    Network,
    load_environment,
    node_capacity,
)
from builder.spec.roles import (
    TARGETS,
    AwsSettings,
    BaseImage,
    BundleSpec,
    ContainerSpec,
    FileSpec,
    InstallExtras,
    QemuSettings,
    RoleSpec,
    ServiceSpec,
    TargetSettings,
    check_target,
    load_role,
    load_roles,
    select_roles,
)

__all__ = [
    "FIRST_NODE_HOST", "LOCAL", "TARGETS", "AwsEnvironment", "AwsSettings", "BaseImage",
    "BundleSpec", "ContainerSpec", "Discovery", "Environment", "FileSpec", "InstallExtras",
    "Mirrors", "Network", "QemuSettings", "RoleSpec", "ServiceSpec", "TargetSettings",
    "check_target", "load_environment", "load_role", "load_roles", "node_capacity",
    "select_roles",
]
