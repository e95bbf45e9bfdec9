"""Spec + environment -> packer/<target>/<role>/: HCL, user-data and provisioning files.
One job per module:

templates.py   the Jinja environment; one template rendered, its errors in one line
role.py        one role's directory: context, bundle, files, agent, content key
output.py      all roles into out/<target>/, staged, moved into place all or nothing
serialize.py   the only way values enter generated HCL, shell and YAML (Jinja filters)
contentkey.py  what determines an image, hashed

The names callers use are re-exported here: `from builder import render as rendering`.
"""

from builder.render.output import render
from builder.render.role import (
    AGENT_PACKAGES,
    AGENT_SOURCES,
    AWS_AMI_NAMES,
    BAKE_USERS,
    DEBIAN_AMI_OWNER,
    NOT_BAKED,
    Rendered,
    bundle_for,
    content_key,
    context_for,
    missing_bundle,
    render_role,
    source_identity,
    tests_digest,
    user_data_template,
)
from builder.render.templates import jinja_env, render_template

__all__ = [
    "AGENT_PACKAGES", "AGENT_SOURCES", "AWS_AMI_NAMES", "BAKE_USERS", "DEBIAN_AMI_OWNER",
    "NOT_BAKED", "Rendered", "bundle_for", "content_key", "context_for", "jinja_env",
    "missing_bundle", "render", "render_role", "render_template", "source_identity",
    "tests_digest", "user_data_template",
]
