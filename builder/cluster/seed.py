"""NoCloud seeds for booted (not baked) instances: meta-data, network-config, and the role's
user-data rendered with this instance's peers and secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from builder.errors import UserError
from builder.render import context_for, jinja_env, render_template, user_data_template
from builder.spec import Environment, RoleSpec
from builder.spec.project import Project


def user_data(role: RoleSpec, env: Environment, project: Project, *, peers: dict,
              secrets: dict, ssh_keys: list[str], settings: dict | None = None) -> str:
    """The role's boot user-data for one instance, plus operator SSH keys for the default
    user (how a person or a test logs in: the image itself carries no user with a key)
    and the node agent's `settings` for this instance."""
    ctx = context_for(role, "qemu", env) | {
        "seed": {"peers": peers, "secrets": secrets, "settings": dict(settings or {})}}
    text = render_template(jinja_env(project), user_data_template(project, role.role), ctx,
                           project.display(role.path))
    data = yaml.safe_load(text)
    if ssh_keys:
        data["ssh_authorized_keys"] = list(ssh_keys)
    return "#cloud-config\n" + yaml.safe_dump(data, sort_keys=False)


def meta_data(instance_id: str, hostname: str, address: str | None = None) -> str:
    data = {"instance-id": instance_id, "local-hostname": hostname}
    if address:
        data["local-ipv4"] = address
    return yaml.safe_dump(data, sort_keys=False)


def write_iso(directory: Path, files: dict[str, str]) -> Path:
    """A `cidata` ISO (what cloud-init's NoCloud datasource looks for)."""
    tool = shutil.which("xorriso")
    if not tool:
        raise UserError("xorriso is not installed (run `make setup`)", field="seed")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o600)
    iso = directory / "seed.iso"
    subprocess.run([tool, "-as", "genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata",
                    "-joliet", "-rock", *[str(directory / n) for n in files]],
                   check=True, capture_output=True)
    return iso


def network_config(mgmt_mac: str, cluster_mac: str, address: str, prefix: int) -> str:
    """NoCloud network-config v2: the management NIC by DHCP from QEMU's user network (the
    host's forwards arrive there), the cluster NIC with its static address. Both matched
    by MAC, so the names the kernel picks do not matter."""
    data = {"version": 2, "ethernets": {
        "mgmt": {"match": {"macaddress": mgmt_mac}, "dhcp4": True},
        "cluster": {"match": {"macaddress": cluster_mac}, "dhcp4": False,
                    "addresses": [f"{address}/{prefix}"]},
    }}
    return yaml.safe_dump(data, sort_keys=False)
