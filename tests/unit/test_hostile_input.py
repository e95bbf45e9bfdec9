"""Hostile values in every string field of a role spec and an environment: each is refused at
load (one line naming the file and field) or reaches every rendered file as the same value,
read back by python-hcl2, PyYAML (node.yaml inside the user-data too) and sh."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

from builder import render as rendering
from builder import spec as specs
from builder.errors import UserError
from builder.render import AGENT_PACKAGES
from builder.spec.project import find_project
from builder.spec.typed import field_name

from .helpers import REPO, copy_project, listing, run_builder, run_sandboxed
from .hostile import HOSTILE, hcl_decode

ROLE = "redis"
ROLE_FIELDS = [
    ("role",), ("version",), ("description",), ("base", "suite"), ("base", "url"),
    ("packages", 0), ("templates", 0), ("services", 0, "name"), ("services", 0, "description"),
    ("secrets", 0), ("tests",), ("targets", "qemu", "disk_size"),
    ("targets", "aws", "instance_type"), ("targets", "aws", "regions", 0),
]
ENVIRONMENT = {
    "name": "hostile", "cluster_name": "shop", "network": {"cidr": "10.30.0.0/24"},
    "nodes": {"etcd-patroni": 3, "redis": 1},
    "discovery": {"method": "aws-tags", "tag_key": "builder:cluster"},
    "aws": {"region": "eu-west-1", "profile": "ops", "channels": ["dev"],
            "ssm_prefix": "/builder", "ami_regions": ["eu-west-1"]},
    "mirrors": {"apt": "http://10.0.2.2:3142/debian", "apt_proxy": "http://10.0.2.2:3128",
                "pip": "http://10.0.2.2:3141/simple", "npm": "http://10.0.2.2:4873/",
                "registries": {"ghcr.io": "10.0.2.2:5000"}},
    "ca_certificates": [],
}
ENV_FIELDS = [
    ("name",), ("cluster_name",), ("network", "cidr"), ("discovery", "tag_key"),
    ("aws", "region"), ("aws", "profile"), ("aws", "channels", 0), ("aws", "ssm_prefix"),
    ("aws", "ami_regions", 0), ("mirrors", "apt"), ("mirrors", "apt_proxy"), ("mirrors", "pip"),
    ("mirrors", "npm"), ("mirrors", "registries", "ghcr.io"), ("ca_certificates", 0),
]
URL_FIELDS = {("mirrors", "apt"), ("mirrors", "apt_proxy"), ("mirrors", "pip"),
              ("mirrors", "npm")}
# Build-host settings (boto3, release channels) and podman's mirrors (container roles only).
NOT_RENDERED_FOR_REDIS = {("aws", "profile"), ("aws", "channels", 0),
                          ("mirrors", "registries", "ghcr.io")}
SOURCES_LIST = ("deb http://deb.debian.org/debian trixie main\n"
                "deb http://deb.debian.org/debian-security trixie-security main\n")


# ----------------------------------------------------------------------- reading back


def hcl_shape(value, path=()) -> set:
    """Every key path of a parsed HCL document and every live `${...}` in its strings: what a
    value pasted as text would change (a new attribute, block or interpolation)."""
    if isinstance(value, dict):
        return set().union(*(hcl_shape(v, path + (k,)) for k, v in value.items()
                             if not (k.startswith("__") and k.endswith("__"))), {path})
    if isinstance(value, list):
        return set().union(*(hcl_shape(v, path + (i,)) for i, v in enumerate(value)), {path})
    if isinstance(value, str) and value.startswith('"'):
        return {(path, live) for live in hcl_decode(value)[1]} | {path}
    return {path}


def read_rendered(directory: Path) -> dict:
    """The rendered files of one role, each read by its own language's reader."""
    with (directory / f"{ROLE}.pkr.hcl").open() as fh:
        hcl = hcl2.load(fh)
    user_data = yaml.safe_load((directory / "user-data").read_text())
    [node_file] = [f for f in user_data["write_files"] if f["path"] == "/etc/builder/node.yaml"]
    return {"hcl": hcl, "user_data": user_data, "node": yaml.safe_load(node_file["content"]),
            "spec": json.loads((directory / "spec.json").read_text()),
            "provision": (directory / "files" / "provision.sh").read_text()}


def mirror_settings(provision: str, sandbox: Path) -> dict[str, str]:
    """Runs the script's mirror steps in sh with /etc moved into the sandbox: the files the
    bake VM would get. Nothing outside the sandbox is touched (PATH has only sed and printf's
    usual homes, and every path the steps write is rewritten)."""
    etc = sandbox / "etc"
    (etc / "apt" / "apt.conf.d").mkdir(parents=True)
    (etc / "apt" / "sources.list.d").mkdir()
    (etc / "apt" / "sources.list").write_text(SOURCES_LIST)
    run_sandboxed(provision, "apt_mirror=", "# Packages must not start", etc)
    return {p.relative_to(etc).as_posix(): p.read_text() for p in etc.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("hostile") / "project")


def _set(data, path: tuple, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _get(data, path: tuple):
    for key in path:
        data = data[key]
    return data


def _write_yaml(path: Path, data) -> None:
    # PyYAML writes a NUL or a control character as an escape ("\0"): a YAML file can hold
    # any string, so the loader must judge the value, not the reader.
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@pytest.fixture
def hostile_project(root: Path):
    """The module's project with images/redis.yaml and environments/hostile.yaml restored
    after each test."""
    role_file = root / "images" / f"{ROLE}.yaml"
    original = role_file.read_text()
    (root / "environments").mkdir(exist_ok=True)
    _write_yaml(root / "environments" / "hostile.yaml", ENVIRONMENT)
    yield root
    role_file.write_text(original)
    _write_yaml(root / "environments" / "hostile.yaml", ENVIRONMENT)


def load(root: Path):
    project = find_project(start=root)
    roles = specs.load_roles(project)
    return project, roles, specs.load_environment("hostile", project, roles)


def render_both(root: Path, out: Path) -> dict[str, dict]:
    project, roles, env = load(root)
    return {target: read_rendered(rendering.render([roles[ROLE]], target, env, project,
                                                   out)[0].directory)
            for target in ("qemu", "aws")}


@pytest.fixture(scope="module")
def baseline(root, tmp_path_factory) -> dict[str, dict]:
    _write_yaml(root / "environments" / "hostile.yaml", ENVIRONMENT)
    return render_both(root, tmp_path_factory.mktemp("baseline"))


# ------------------------------------------------------------------------ the property


def _refused(exc: UserError, shown: str, field: tuple) -> None:
    """One line naming the file and the field (or the section a cross-field check names)."""
    assert "\n" not in exc.render() and "Traceback" not in exc.render()
    assert exc.file == shown, exc.render()
    assert exc.field is not None and field_name(field).startswith(exc.field), exc.render()


def _same_shape(rendered: dict, baseline: dict) -> None:
    for target in ("qemu", "aws"):
        assert hcl_shape(rendered[target]["hcl"]) == hcl_shape(baseline[target]["hcl"])
        assert rendered[target]["user_data"].keys() == baseline[target]["user_data"].keys()
        assert rendered[target]["node"].keys() == baseline[target]["node"].keys()
        script = rendered[target]["provision"]
        assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def _hcl_attribute(doc: dict, name: str) -> str:
    """An attribute of the amazon-ebs source (python-hcl2 keeps the labels' quotes)."""
    [block] = [b['"amazon-ebs"'] for b in doc["source"] if '"amazon-ebs"' in b]
    return hcl_decode(block[f'"{ROLE}"'][name])[0]


def package_words(provision: str) -> list[str]:
    """The package list of the script's install loop, as sh splits it."""
    start = provision.index("for p in ") + len("for p in ")
    loop = provision[start:provision.index("; do\n", start)]
    proc = subprocess.run(["sh", "-c", f"printf '%s\\n' {loop}"], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return proc.stdout.splitlines()


def _role_value_arrived(field: tuple, value: str, rendered: dict) -> None:
    for target in ("qemu", "aws"):
        assert _get(rendered[target]["spec"], field) == value
        if field == ("packages", 0):
            # The agent's own packages follow the role's (builder/render/role.py AGENT_PACKAGES).
            assert package_words(rendered[target]["provision"]) == \
                [value, *AGENT_PACKAGES[target]]
        if field == ("secrets", 0):
            assert list(rendered[target]["node"]["secrets"]) == [value]
    if field == ("description",):
        assert _hcl_attribute(rendered["aws"]["hcl"], "ami_description") == value
    else:
        # spec.json (above) is where these go; the image tests read them from there.
        assert field in {("services", 0, "description"), ("services", 0, "name"),
                         ("packages", 0), ("secrets", 0)}, f"{field} accepted: read it back here"


def _env_value_arrived(field: tuple, value: str, rendered: dict, sandbox: Path) -> None:
    node = rendered["aws"]["node"]
    if field in URL_FIELDS:
        settings = mirror_settings(rendered["qemu"]["provision"], sandbox)
        expected = {
            ("mirrors", "apt"): ("apt/sources.list", SOURCES_LIST.replace(
                "http://deb.debian.org/debian", value)),
            ("mirrors", "apt_proxy"): ("apt/apt.conf.d/01builder-proxy",
                                       f'Acquire::http::Proxy "{value}";\n'),
            ("mirrors", "pip"): ("pip.conf", f"[global]\nindex-url = {value}\n"),
            ("mirrors", "npm"): ("npmrc", f"registry={value}\n"),
        }[field]
        assert settings[expected[0]] == expected[1]
    elif field in NOT_RENDERED_FOR_REDIS:
        pass
    elif field == ("name",):
        assert node["environment"] == value
    else:
        readers = {("discovery", "tag_key"): node["discovery"]["tag_key"],
                   ("aws", "region"): node["discovery"]["region"]}
        assert field in readers, f"{field} accepted: read it back here"
        assert readers[field] == value


def _cases(fields: list[tuple], kind: str) -> list:
    return [pytest.param(kind, field, name, id=f"{field_name(field)}-{name}")
            for field in fields for name in HOSTILE]


@pytest.mark.parametrize(("kind", "field", "name"),
                         _cases(ROLE_FIELDS, "role") + _cases(ENV_FIELDS, "env"))
def test_hostile_value_is_refused_or_arrives_as_data(hostile_project, baseline, tmp_path,
                                                     kind, field, name):
    value = HOSTILE[name]
    if kind == "role":
        path, shown = hostile_project / "images" / f"{ROLE}.yaml", f"images/{ROLE}.yaml"
        data = yaml.safe_load(path.read_text())
        data["targets"]["aws"].setdefault("regions", ["eu-west-1"])
    else:
        path, shown = hostile_project / "environments" / "hostile.yaml", \
            "environments/hostile.yaml"
        data = json.loads(json.dumps(ENVIRONMENT))
        if field in URL_FIELDS:
            value = "http://10.0.2.2:3142/" + value  # past the scheme, into the URL's path
        if field[0] == "ca_certificates":
            data["ca_certificates"] = [None]
    _set(data, field, value)
    _write_yaml(path, data)
    try:
        load(hostile_project)
    except UserError as exc:
        _refused(exc, shown, field)
        return
    rendered = render_both(hostile_project, tmp_path / "out")
    _same_shape(rendered, baseline)
    if kind == "role":
        _role_value_arrived(field, value, rendered)
    else:
        _env_value_arrived(field, value, rendered, tmp_path / "sandbox")


# ------------------------------------------------------------- the issue's own examples


def test_a_packer_expression_in_the_description_is_inert_text(hostile_project, tmp_path):
    path = hostile_project / "images" / f"{ROLE}.yaml"
    data = yaml.safe_load(path.read_text())
    data["description"] = 'cache ${file("/etc/hostname")} %{if true}"quoted"\\'
    _write_yaml(path, data)
    rendered = render_both(hostile_project, tmp_path / "out")
    raw = source_attr(tmp_path / "out" / "aws" / ROLE / f"{ROLE}.pkr.hcl", "ami_description")
    assert "$${file(" in raw and "%%{if" in raw
    assert _hcl_attribute(rendered["aws"]["hcl"], "ami_description") == data["description"]


def source_attr(hcl_file: Path, name: str) -> str:
    """The attribute as written in the file, escapes and all."""
    with hcl_file.open() as fh:
        [block] = [b['"amazon-ebs"'] for b in hcl2.load(fh)["source"] if '"amazon-ebs"' in b]
    return block[f'"{ROLE}"'][name]


@pytest.mark.parametrize(("text", "expected"), [
    ("mirrors: {apt: \"http://m/debian';touch${IFS}/tmp/x;'\"}\n", "mirrors.apt: expected"),
    ("discovery: {method: aws-tags, tag_key: \"k\\\"\\nregion: evil\"}\n",
     "discovery.tag_key: control character"),
    ("aws: {region: \"eu-west-1\\nroles: x\"}\n", "aws.region: control character"),
    ("network: {cidr: 0.0.0.0/0}\n", "network.cidr: 0.0.0.0/0 is not inside a private"),
])
def test_the_cli_refuses_in_one_line_and_writes_nothing(tmp_path, text, expected):
    root = copy_project(tmp_path / "project")
    (root / "bad.yaml").write_text("name: bad\n" + text)
    out = tmp_path / "out"
    proc = run_builder(["render", "--all", "--target", "aws", "--env", "bad.yaml",
                        "--out", str(out)], root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and listing(out) is None


def test_mirror_urls_with_sed_characters_reach_the_bake_vm_as_written(tmp_path):
    url = "http://10.0.2.2:3142/debian&x=(1)*%41,+~!"
    project = find_project(start=REPO)
    roles = specs.load_roles(project)
    env = specs.load_environment("local", project, roles)
    env = specs.Environment(**{**{f: getattr(env, f) for f in ("name", "cluster_name",
                                                               "network", "nodes")},
                               "mirrors": specs.Mirrors(apt=url, pip=url, npm=url)})
    [item] = rendering.render([roles[ROLE]], "qemu", env, project, tmp_path / "out")
    settings = mirror_settings((item.directory / "files" / "provision.sh").read_text(),
                               tmp_path / "sandbox")
    assert settings["apt/sources.list"] == SOURCES_LIST.replace("http://deb.debian.org/debian",
                                                                url)
    assert settings["pip.conf"] == f"[global]\nindex-url = {url}\n"
    assert settings["npmrc"] == f"registry={url}\n"
