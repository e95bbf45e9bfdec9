"""Rendering the role's baked templates and writing them with their owners and modes.

The Jinja settings are the ones the image tests use (tests/images/conftest.py
render_in_image), so what the bake proved is what renders at boot.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path

import jinja2

from builder.agent.errors import AgentError
from builder.agent.paths import Root

TEMPLATES = "/usr/share/builder/templates"


def environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["tojson"] = json.dumps
    return env


def render(root: Root, role: str, template: str, context: dict) -> str:
    directory = root(TEMPLATES) / role
    try:
        return environment(directory).get_template(template).render(**context)
    except jinja2.TemplateNotFound:
        raise AgentError(f"template {directory / template} is missing from the image") from None
    except jinja2.UndefinedError as exc:
        raise AgentError(f"template {role}/{template}: {exc.message}") from None


def _ids(root: Root, owner: str, group: str) -> tuple[int, int] | None:
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        if root.is_system:
            raise AgentError(f"account {owner}:{group} does not exist on this image") from None
        return None  # a rehearsal root on a machine without the role's accounts


def write(root: Root, dest: str, text: str, *, mode: int = 0o644, owner: str = "root",
          group: str = "root") -> Path:
    """Atomically replace root/dest; the file never exists with a wider mode or wrong owner,
    since several of these hold passwords."""
    path = root(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.builder-tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not narrow what the service needs to read
        ids = _ids(root, owner, group)
        if ids is not None:
            os.fchown(fd, *ids)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def directory(root: Root, dest: str, *, mode: int, owner: str, group: str) -> Path:
    path = root(dest)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    ids = _ids(root, owner, group)
    if ids is not None:
        os.chown(path, *ids)
    return path
