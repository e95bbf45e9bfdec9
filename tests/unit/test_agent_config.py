"""node.yaml as cloud-init writes it from the rendered user-data, and the secrets the node
agent resolves from its references: the local secrets file or SSM Parameter Store."""

from __future__ import annotations

import boto3
import pytest
import yaml
from moto import mock_aws

from builder.agent import config
from builder.agent.errors import AgentError
from builder.agent.paths import Root
from builder.render import context_for, jinja_env
from builder.spec import load_environment, load_roles
from builder.spec.project import find_project

from .helpers import REPO

PEERS = {"etcd-patroni": [{"name": f"etcd-patroni-{i}", "address": f"10.20.0.1{i + 1}"}
                          for i in range(3)]}


def user_data(role: str, env: str = "local", target: str = "qemu", **extra) -> dict:
    project = find_project(start=REPO)
    specs = load_roles(project)
    ctx = context_for(specs[role], target, load_environment(env, project, specs))
    ctx.update(extra)
    return yaml.safe_load(jinja_env(project).get_template("node.yaml.j2").render(**ctx))


def install(root: Root, cloud_config: dict) -> None:
    """What cloud-init's write_files does with the user-data, under root."""
    for item in cloud_config["write_files"]:
        path = root(item["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(item["content"])
        path.chmod(int(item["permissions"], 8))


@pytest.fixture
def root(tmp_path) -> Root:
    return Root(tmp_path)


def seeded(root: Root, secrets: dict) -> config.NodeConfig:
    install(root, user_data("etcd-patroni", seed={"peers": PEERS, "secrets": secrets}))
    return config.load(root)


def test_the_local_seed_carries_peers_and_a_root_only_secrets_file(root):
    values = {"postgres_superuser_password": 'p"w\nline2: {not yaml}',
              "postgres_replication_password": "r", "patroni_api_password": "a",
              "saleor_db_password": "s"}
    cfg = seeded(root, values)
    assert (cfg.cluster, cfg.environment, cfg.role, cfg.target) == (
        "saleor", "local", "etcd-patroni", "qemu")
    assert cfg.cidr == "10.20.0.0/24" and cfg.nodes["etcd-patroni"] == 3
    assert cfg.method == "static" and cfg.discovery["peers"] == PEERS
    assert cfg.secrets["saleor_db_password"] == {
        "user-data": "saleor_db_password"}
    assert oct(root(config.SECRETS_FILE).stat().st_mode & 0o777) == "0o600"
    assert config.resolve_secrets(cfg, sorted(values), root) == values


def test_rendered_packer_user_data_has_no_secret_values_or_secrets_file():
    cloud = user_data("redis")
    assert [f["path"] for f in cloud["write_files"]] == ["/etc/builder/node.yaml"]
    node = yaml.safe_load(cloud["write_files"][0]["content"])
    assert node["secrets"] == {"redis_password": {"user-data": "redis_password"}}
    assert "peers" not in node["discovery"]


def test_aws_user_data_refers_to_ssm():
    cloud = user_data("redis", env="example", target="aws")
    node = yaml.safe_load(cloud["write_files"][0]["content"])
    assert node["secrets"] == {
        "redis_password": {"ssm": "/builder/example/secrets/redis_password"}}
    assert node["discovery"] == {"method": "aws-tags", "tag_key": "builder:cluster",
                                 "region": "eu-central-1"}


def test_a_missing_secret_is_one_error_naming_it(root):
    cfg = seeded(root, {"postgres_superuser_password": "p", "postgres_replication_password": "r",
                        "patroni_api_password": "a"})
    needed = ["postgres_superuser_password", "saleor_db_password"]
    with pytest.raises(AgentError) as err:
        config.resolve_secrets(cfg, needed, root)
    message = str(err.value)
    assert "saleor_db_password" in message and "postgres_superuser_password" not in message
    assert str(root(config.SECRETS_FILE)) in message and "\n" not in message


def test_no_secrets_file_names_every_missing_secret(root):
    install(root, user_data("etcd-patroni", seed={"peers": PEERS, "secrets": {}}))
    cfg = config.load(root)
    with pytest.raises(AgentError, match="patroni_api_password.*postgres_replication_password"):
        config.resolve_secrets(cfg, ["patroni_api_password", "postgres_replication_password"],
                               root)


def test_a_secret_without_a_reference_is_named(root):
    cfg = seeded(root, {})
    with pytest.raises(AgentError, match="no reference for secret.*redis_password"):
        config.resolve_secrets(cfg, ["redis_password"], root)


@mock_aws
def test_ssm_references_read_secure_strings(root):
    ssm = boto3.client("ssm", region_name="eu-central-1")
    ssm.put_parameter(Name="/builder/example/secrets/redis_password", Value="from-ssm",
                      Type="SecureString")
    install(root, user_data("redis", env="example", target="aws"))
    cfg = config.load(root)
    assert config.resolve_secrets(cfg, ["redis_password"], root) == {
        "redis_password": "from-ssm"}


@mock_aws
def test_a_missing_ssm_parameter_is_named(root):
    install(root, user_data("redis", env="example", target="aws"))
    cfg = config.load(root)
    with pytest.raises(AgentError,
                       match="redis_password .SSM parameter /builder/example/secrets/redis_"):
        config.resolve_secrets(cfg, ["redis_password"], root)


@pytest.mark.parametrize(("text", "field"), [
    ("cluster: c\nenvironment: e\nrole: redis\nnetwork: {cidr: 10.0.0.0/8}\n", "discovery"),
    ("cluster: c\nenvironment: e\nrole: redis\ndiscovery: {method: static}\n", "network.cidr"),
    ("cluster: c\nenvironment: e\nrole: redis\nnetwork: {cidr: 10.0.0.0/8}\n"
     "discovery: {method: dns}\n", "discovery.method"),
    ("cluster: c\nenvironment: e\nrole: redis\nnetwork: {cidr: 10.0.0.0/8}\n"
     "discovery: {method: static}\nsecrets: {a: {vault: x}}\n", "secrets.a"),
    ("cluster: [\n", "not valid YAML"),
])
def test_bad_node_yaml_is_one_line_naming_the_field(root, text, field):
    path = root(config.NODE_FILE)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(AgentError) as err:
        config.load(root)
    assert field in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
