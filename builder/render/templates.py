"""The Jinja environment of a project's templates/ and cloud-init/, and one template rendered
with an undefined name, a syntax error or a missing template said in one line (file, line,
field)."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import jinja2

from builder.errors import UserError
from builder.render import serialize
from builder.spec.project import Project


def jinja_env(project: Project) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(project.templates), str(project.cloud_init)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # Every value crosses into HCL, shell or YAML through one of these (serialize.py).
    env.filters.update(serialize.FILTERS)
    return env


def _template_shown(env: jinja2.Environment, filename: str) -> str | None:
    """A template file as the user should read it: relative to the project (the loader's
    search paths are templates/ and cloud-init/ of the project), else None."""
    path = Path(filename)
    for root in map(Path, getattr(env.loader, "searchpath", ())):
        if path.is_relative_to(root):
            return str(path.relative_to(root.parent))
    return None


def _undefined_at(env: jinja2.Environment, exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template frame of the error: with includes, the spec that was being
    rendered is rarely where the undefined name is written."""
    where: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        shown = _template_shown(env, frame.filename)
        if shown:
            where = (shown, frame.lineno)
    return where


_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined$|has no (?:attribute|element) '?([^']+?)'?$")


def render_template(env: jinja2.Environment, name: str, context: dict, display: str) -> str:
    try:
        return env.get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        file, line = _undefined_at(env, exc)
        match = _UNDEFINED_NAME.search(exc.message or "")
        field = next((g for g in match.groups() if g), None) if match else None
        raise UserError(f"undefined variable ({exc.message}; rendering {display})",
                        file=file or display, line=line, field=field) from None
    except jinja2.TemplateSyntaxError as exc:
        shown = _template_shown(env, exc.filename) if exc.filename else None
        raise UserError(f"template syntax: {exc.message}", file=shown or exc.filename or display,
                        line=exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        raise UserError(f"template not found: {exc.name}", file=display) from None
