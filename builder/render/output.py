"""Roles rendered into out/<target>/<role>/, all or nothing.

Rendering happens in a temporary directory next to the output and is moved into place only
when every role rendered; a failure leaves the output directory as it was.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from builder.errors import UserError
from builder.render.role import Rendered, render_role
from builder.render.templates import jinja_env
from builder.spec import Environment, RoleSpec
from builder.spec.project import Project


def render(roles: list[RoleSpec], target: str, env: Environment, project: Project,
           out: Path, layers: bool = True, samples: Path | None = None) -> list[Rendered]:
    """Render roles into out/<target>/<role>/, all or nothing; `samples`: see role.bundle_for."""
    # A failed render must leave no trace, not even an empty --out it had to create.
    created = [d for d in (out, *out.parents) if not d.exists()]
    done = False
    try:
        staging = _staging_in(out)
    except BaseException:
        _remove_empty(created)
        raise
    jenv = jinja_env(project)
    try:
        staged = [render_role(r, target, env, project, staging / r.role, jenv, layers, samples)
                  for r in roles]
        results = []
        for item in staged:
            final = out / target / item.role.role
            final.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if final.exists():
                old = staging / f".old-{item.role.role}"
                final.rename(old)
            item.directory.rename(final)
            if old:
                shutil.rmtree(old)
            results.append(dataclasses.replace(item, directory=final))
        done = True
        return results
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_empty(created)


def _staging_in(out: Path) -> Path:
    """A private directory inside `out` (made if missing); a path that cannot hold one is
    a bad --out, said in one line."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory", field="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".render-", dir=out))
    except OSError as exc:
        raise UserError(f"cannot write into {out}: {exc.strerror or exc}",
                        field="--out") from exc


def _remove_empty(created: list[Path]) -> None:
    """The directories a failed render made for --out, innermost first."""
    for d in created:
        try:
            d.rmdir()
        except OSError:
            break
