"""Role specs of the real images/ and environments load into typed objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import spec as specs
from builder.errors import UserError
from builder.spec.project import find_project

from .helpers import REPO, ROLES, sample_ca_pem


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
    assert [s.name for s in db.services] == ["etcd", "patroni", "builder-etcd-leader-guard",
                                             "builder-graceful-leave",
                                             "builder-lifecycle-watch"]
    assert "patroni" in db.package_names and "postgresql-17" in db.package_names
    assert db.targets.qemu.memory == 1536 and db.targets.qemu.disk_size == "6G"
    assert db.targets.aws.instance_type == "t3.medium" and db.targets.aws.volume_size == 20
    # Unset fields take the dataclass defaults.
    assert db.targets.aws.volume_type == "gp3" and db.targets.aws.regions == []
    assert [(f.dest, f.mode) for f in db.files] == [
        ("/usr/lib/builder/patroni-post-bootstrap", "0755"),
        ("/etc/systemd/system/builder-etcd-leader-guard.service", "0644"),
        ("/etc/systemd/system/builder-graceful-leave.service", "0644"),
        ("/etc/systemd/system/builder-lifecycle-watch.service", "0644")]

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
PEM = sample_ca_pem()


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


def _saleor_api(project: Path, old: str, new: str):
    path = project / "images" / "saleor-api.yaml"
    text = path.read_text()
    assert text.count(old) == 1, f"images/saleor-api.yaml no longer holds {old!r}"
    path.write_text(text.replace(old, new))
    proj = find_project(start=project)
    return specs.load_role(path, proj)


def test_install_method_folds_in_its_own_packages_and_files_only(project):
    bundle = _saleor_api(project, "install: bundle\n", "install: bundle\n")
    assert bundle.install == "bundle" and bundle.container is None
    assert bundle.bundle.app == "saleor" and bundle.per_install == {}
    assert "python3-venv" in bundle.packages and "podman" not in bundle.packages
    assert "/etc/systemd/system/saleor-api.service" in [f.dest for f in bundle.files]
    container = _saleor_api(project, "install: bundle\n", "install: container\n")
    assert container.install == "container" and container.bundle is None
    assert container.container.ref == "ghcr.io/saleor/saleor:3.23.28"
    assert "podman" in container.packages and "python3-venv" not in container.packages
    dests = [f.dest for f in container.files]
    assert "/etc/containers/systemd/saleor-api.container" in dests
    assert "/etc/systemd/system/saleor-api.service" not in dests
    # What the content key and the image tests see: the chosen method alone.
    assert "bundle" not in str(container.as_data()["per_install"])


def test_container_digest_pins_the_reference(project):
    role = _saleor_api(project, '  tag: "3.23.28"\n',
                       '  tag: "3.23.28"\n  digest: sha256:' + "b" * 64 + "\n")
    assert role.container is None  # install: bundle still
    role = _saleor_api(project, "install: bundle\n", "install: container\n")
    assert role.container.ref == "ghcr.io/saleor/saleor:3.23.28@sha256:" + "b" * 64


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("install: bundle\n", "install: podman\n", "install", "must be one of"),
    ("bundle:\n  app: saleor\n", "", "install", "no bundle section"),
    ("install: bundle\n", "", "install", "both given"),
    ("  container:\n    packages: [podman]\n", "  docker:\n    packages: [podman]\n",
     "per_install.docker", "unknown install method"),
    ("  image: ghcr.io/saleor/saleor\n", "  image: ghcr.io/saleor/saleor:3.23\n",
     "container.image", "no tag"),
    ('  tag: "3.23.28"\n', '  tag: "3.23 28"\n', "container.tag", "image tag"),
    ("      - src: container/saleor-api.container\n",
     "      - src: container/saleor-api.quadlet\n",
     "per_install.container.files[0].src", "no such file"),
])
def test_install_mistakes_name_their_field(project, old, new, field, message):
    with pytest.raises(UserError) as exc:
        _saleor_api(project, old, new)
    assert exc.value.field == field and message in str(exc.value), str(exc.value)
    assert exc.value.file == "images/saleor-api.yaml"


def test_registry_mirrors_are_checked(project):
    (project / "environments").mkdir(exist_ok=True)
    proj = find_project(start=project)
    env = project / "environments" / "mirrored.yaml"
    env.write_text("name: mirrored\nmirrors:\n  registries:\n    ghcr.io: 10.0.2.2:5000\n")
    loaded = specs.load_environment("mirrored", proj, specs.load_roles(proj))
    assert loaded.mirrors.registries == {"ghcr.io": "10.0.2.2:5000"}
    env.write_text("name: mirrored\nmirrors:\n  registries:\n"
                   "    ghcr.io: https://10.0.2.2:5000\n")
    with pytest.raises(UserError) as exc:
        specs.load_environment("mirrored", proj, specs.load_roles(proj))
    assert exc.value.field == "mirrors.registries" and "host[:port]" in str(exc.value)


def _environment_error(project: Path, text: str, files: dict[str, str] | None = None):
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "checked.yaml").write_text(text)
    for name, content in (files or {}).items():
        (project / "environments" / name).write_text(content)
    proj = find_project(start=project)
    with pytest.raises(UserError) as exc:
        specs.load_environment("checked", proj, specs.load_roles(proj))
    assert exc.value.file == "environments/checked.yaml"
    assert "\n" not in str(exc.value)
    return exc.value


TWELVE_NODES = "nodes: {etcd-patroni: 3, haproxy: 2, redis: 1, saleor-api: 6}\n"


@pytest.mark.parametrize(("text", "field", "message"), [
    ("network: {cidr: 10.20.0.0/30}\n" + TWELVE_NODES, "network.cidr", "holds 0 nodes"),
    ("network: {cidr: 10.20.0.0/28}\n" + TWELVE_NODES, "network.cidr", "the environment has 12"),
    ("network: {cidr: 0.0.0.0/0}\n", "network.cidr", "private (RFC 1918)"),
    ("network: {cidr: 203.0.113.0/24}\n", "network.cidr", "private (RFC 1918)"),
    ("network: {cidr: 'fd00::/64'}\n", "network.cidr", "IPv6"),
    ("nodes: {etcd-patroni: 0}\n", "nodes.etcd-patroni", "odd number of members >= 1"),
    ("nodes: {etcd-patroni: 2}\n", "nodes.etcd-patroni", "odd number"),
    ("cluster_name: " + "c" * 5000 + "\n", "cluster_name", "AWS allows 128"),
    ("cluster_name: \"shop\\nregion: x\"\n", "cluster_name", "control character U+000A"),
    ("aws: {region: 'eu-central-1\"'}\n", "aws.region", "AWS region name"),
    ("aws: {ami_regions: [eu-west-1, 'us east 1']}\n", "aws.ami_regions", "AWS region name"),
    ("aws: {ssm_prefix: '/a b'}\n", "aws.ssm_prefix", "SSM parameter path"),
    ("discovery: {tag_key: 'k\"ey'}\n", "discovery.tag_key", "EC2 tag key"),
    ("discovery: {tag_key: 'aws:cluster'}\n", "discovery.tag_key", "not starting with aws:"),
    ("mirrors: {apt: \"http://m/debian';touch${IFS}/tmp/x;'\"}\n", "mirrors.apt", "http(s) URL"),
    ("mirrors: {pip: 'http://user:secret@m/simple'}\n", "mirrors.pip", "credentials"),
    ("mirrors: {npm: 'ftp://m/npm'}\n", "mirrors.npm", "http(s) URL"),
    ("mirrors: {apt_proxy: 'http://m:3142/#x'}\n", "mirrors.apt_proxy", "http(s) URL"),
    ("aws: {profile: \"ops\\0\"}\n", "aws.profile", "control character U+0000"),
])
def test_environments_that_cannot_work_are_refused_at_load(project, text, field, message):
    error = _environment_error(project, "name: checked\n" + text)
    assert error.field == field and message in error.message, str(error)


def test_a_pem_header_with_a_garbage_body_is_no_certificate(project):
    error = _environment_error(
        project, "name: checked\nca_certificates: [corp-ca.pem]\n",
        {"corp-ca.pem": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                        "-----END CERTIFICATE-----\n"})
    assert error.field == "ca_certificates[0]" and "not a PEM certificate" in error.message


def test_mirror_urls_with_sed_and_query_characters_load(project):
    (project / "environments").mkdir(exist_ok=True)
    url = "http://10.0.2.2:3142/debian&x=(1)*%41,+~!"
    (project / "environments" / "ok.yaml").write_text(f"name: ok\nmirrors: {{apt: '{url}'}}\n")
    proj = find_project(start=project)
    assert specs.load_environment("ok", proj, specs.load_roles(proj)).mirrors.apt == url


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("description: Redis for Saleor's cache and Celery broker\n",
     "description: '" + "d" * 256 + "'\n", "description", "AWS allows 255"),
    ("description: Redis for Saleor's cache and Celery broker\n",
     "description: 'base {{ .SourceAMI }}'\n", "description", "Packer template syntax"),
    ("    instance_type: t3.small\n", "    instance_type: 't3.small\"'\n",
     "targets.aws.instance_type", "EC2 instance type"),
    ("description: Redis for Saleor's cache and Celery broker\n",
     "description: \"Redis\\tcache\"\n", "description", "control character U+0009"),
])
def test_role_fields_with_aws_limits(project, old, new, field, message):
    path = project / "images" / "redis.yaml"
    text = path.read_text()
    assert text.count(old) == 1, f"images/redis.yaml no longer holds {old!r}"
    path.write_text(text.replace(old, new))
    with pytest.raises(UserError) as exc:
        specs.load_role(path, find_project(start=project))
    assert exc.value.field == field and message in exc.value.message, str(exc.value)
    assert exc.value.file == "images/redis.yaml"
