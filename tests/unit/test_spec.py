"""Role specs of the real images/ and environments load into typed objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import spec as specs
from builder.errors import UserError
from builder.project import find_project

from .helpers import REPO, ROLES


@pytest.fixture(scope="module")
def real():
    project = find_project(start=REPO)
    return project, specs.load_roles(project)


def test_every_role_of_images_loads(real):
    project, loaded = real
    assert sorted(loaded) == sorted(ROLES)
    assert sorted(p.stem for p in project.images.glob("*.yaml")) == sorted(ROLES)
    for name, role in loaded.items():
        assert role.role == name
        assert role.path == project.images / f"{name}.yaml"


def test_fields_are_typed(real):
    _, loaded = real
    for role in loaded.values():
        assert isinstance(role, specs.RoleSpec)
        assert isinstance(role.base, specs.BaseImage)
        assert isinstance(role.targets.qemu, specs.QemuSettings)
        assert isinstance(role.targets.aws, specs.AwsSettings)
        assert all(isinstance(f, specs.FileSpec) for f in role.files)
        assert all(isinstance(s, specs.ServiceSpec) for s in role.services)
        assert all(type(p) is int for p in role.ports)
        assert type(role.targets.qemu.memory) is int
        assert type(role.targets.aws.volume_size) is int
        assert role.packages and role.services and role.ports
        assert (REPO / role.tests).is_dir()


def test_values_come_from_the_yaml(real):
    _, loaded = real
    db = loaded["etcd-patroni"]
    assert db.version == "1.1.0"
    assert db.base.suite == "trixie" and db.base.url is None
    assert db.ports == [2379, 2380, 5432, 8008]
    assert [s.name for s in db.services] == ["etcd", "patroni", "builder-etcd-leader-guard"]
    assert "patroni" in db.package_names and "postgresql-17" in db.package_names
    assert db.targets.qemu.memory == 1536 and db.targets.qemu.disk_size == "6G"
    assert db.targets.aws.instance_type == "t3.medium" and db.targets.aws.volume_size == 20
    # Unset fields take the dataclass defaults.
    assert db.targets.aws.volume_type == "gp3" and db.targets.aws.regions == []
    assert [(f.dest, f.mode) for f in db.files] == [
        ("/usr/lib/builder/patroni-post-bootstrap", "0755"),
        ("/etc/systemd/system/builder-etcd-leader-guard.service", "0644")]

    api = loaded["saleor-api"]
    unit = next(f for f in api.files if f.src == "saleor-api.service")
    assert unit.dest == "/etc/systemd/system/saleor-api.service" and unit.mode == "0644"
    assert "saleor_secret_key" in api.secrets
    assert loaded["haproxy"].ports == [80, 5432, 5433, 8080, 9000]


def test_as_data_is_plain_and_has_no_path(real):
    _, loaded = real
    data = loaded["redis"].as_data()
    assert "path" not in data
    assert data["targets"]["qemu"]["memory"] == 1024
    assert data["services"][0] == {"name": "redis-server",
                                   "description": loaded["redis"].services[0].description}


# ----------------------------------------------------------------------------- environments


def test_builtin_local_environment(real):
    project, loaded = real
    env = specs.load_environment("local", project, loaded)
    assert env.name == "local" and env.path is None
    assert sorted(env.nodes) == sorted(ROLES)
    assert env.nodes["etcd-patroni"] == 3
    assert env.network.cidr == "10.20.0.0/24"
    assert env.discovery.method == "static"
    assert env.mirrors == specs.Mirrors()
    assert specs.load_environment(None, project, loaded) == env


ENV_YAML = """\
name: staging
cluster_name: shop
network:
  cidr: 10.30.0.0/16
nodes:
  etcd-patroni: 3
  saleor-api: 4
discovery:
  method: aws-tags
  tag_key: shop:cluster
aws:
  region: eu-west-1
  ami_regions: [eu-west-1, us-east-1]
mirrors:
  apt: http://deb.example.test/debian
ca_certificates: [corp-ca.pem]
"""
PEM = "-----BEGIN CERTIFICATE-----\nMIIBsample\n-----END CERTIFICATE-----\n"


def _check_staging(env: specs.Environment, where: Path) -> None:
    assert env.name == "staging" and env.cluster_name == "shop"
    assert env.network == specs.Network(cidr="10.30.0.0/16")
    assert env.nodes == {"etcd-patroni": 3, "saleor-api": 4}
    assert env.discovery == specs.Discovery(method="aws-tags", tag_key="shop:cluster")
    assert env.aws.region == "eu-west-1"
    assert env.aws.ami_regions == ["eu-west-1", "us-east-1"]
    assert env.aws.channels == ["dev", "staging", "prod"]          # default kept
    assert env.mirrors.apt == "http://deb.example.test/debian" and env.mirrors.pip is None
    # CA files are found next to the environment file, not in the current directory.
    assert env.ca_paths() == [(where / "corp-ca.pem").resolve()]


def test_environment_from_a_yaml_file(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "staging.yaml").write_text(ENV_YAML)
    (elsewhere / "corp-ca.pem").write_text(PEM)
    proj = find_project(start=project)
    env = specs.load_environment(str(elsewhere / "staging.yaml"), proj,
                                 specs.load_roles(proj))
    _check_staging(env, elsewhere)
    assert env.path == elsewhere / "staging.yaml"


def test_environment_by_name_under_environments(project):
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "staging.yaml").write_text(ENV_YAML)
    (project / "environments" / "corp-ca.pem").write_text(PEM)
    proj = find_project(start=project)
    env = specs.load_environment("staging", proj, specs.load_roles(proj))
    _check_staging(env, project / "environments")


def test_environment_ca_must_be_pem(project):
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "staging.yaml").write_text(ENV_YAML)
    (project / "environments" / "corp-ca.pem").write_text("not a certificate\n")
    proj = find_project(start=project)
    with pytest.raises(UserError) as exc:
        specs.load_environment("staging", proj, specs.load_roles(proj))
    assert exc.value.field == "ca_certificates[0]"
    assert exc.value.file == "environments/staging.yaml" and exc.value.line == 16


def test_yaml_merge_keys_are_not_duplicates(project):
    # `<<` merges are legitimate YAML (a key may override a merged one); only a key written
    # twice in one mapping is rejected (see test_cli_errors).
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "merged.yaml").write_text(
        "name: merged\naws:\n  <<: {region: eu-west-1, profile: ops}\n  region: us-east-1\n")
    proj = find_project(start=project)
    env = specs.load_environment("merged", proj, specs.load_roles(proj))
    assert (env.aws.region, env.aws.profile) == ("us-east-1", "ops")
