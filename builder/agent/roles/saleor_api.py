"""Saleor API: the environment from metadata and secrets, migrations once per release across
the cluster, then uvicorn (behind nginx on :8000), a Celery worker, and the beat wrapper
(beat itself runs on the one node holding the beat lock).

The database is reached through HAProxy :5432 (always the Patroni primary), the cache and
broker on the redis role. Settings (node.yaml `settings`): `db_user`, `db_name` (saleor),
`public_url` (default http://<haproxy>/), `allowed_hosts` and `allowed_client_hosts` (added
to this node's, HAProxy's and loopback names), `db_timeout` (seconds to wait for the database
at boot, 900), `migrate_timeout` (1800), `restore_timeout` (600), `ready_timeout` (300).

A bundle vendored with `--schema-dump` carries its release's migrated schema in
/opt/saleor/schema: the first node to boot against an empty database restores it there
instead of migrating (builder/agent/schema.py); the report's `migrate.how` says which.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

from builder.agent import migrations, readiness, schema, templating
from builder.agent.errors import AgentError
from builder.agent.roles import APP_DATABASE, APP_USER, Inputs

ROLE = "saleor-api"
PEER_ROLES = ["haproxy", "redis", "saleor-api", "saleor-dashboard", "storefront"]
ENV_FILE = "/etc/saleor/saleor.env"
NGINX_SITE = "/etc/nginx/sites-enabled/saleor.conf"
IMAGE_FILE = "/etc/builder/image.json"
SCHEMA_DIR = "/opt/saleor/schema"  # install-saleor.sh copies the bundle's schema/ here
APPLYING = re.compile(r"\s*Applying (\S+?)\.\.\.")  # Django's migrate, one per migration
# Order matters only for the report; each unit waits for nothing but the network.
UNITS = ("saleor-api", "saleor-worker", "saleor-beat", "nginx")
# Where nginx finds the collected static files, by install method.
STATIC_ROOT = {"bundle": "/opt/saleor/app/static", "container": "/opt/saleor/static"}


# The JWT key for containers: a podman secret exposed as RSA_PRIVATE_KEY (see saleor.env.j2).
RSA_SECRET = "saleor-rsa-private-key"
RSA_SECRET_ARG = f"{RSA_SECRET},type=env,target=RSA_PRIVATE_KEY"
RSA_KEY_FILE = "/etc/saleor/.rsa-private-key.pem"


def migrate_command(install: dict) -> tuple[str, ...]:
    """`manage.py migrate` as the API units run Saleor: the bundle's venv as user saleor, or
    the image (the user and confinement of its Quadlet units)."""
    if install["method"] == "container":
        return ("podman", "run", "--rm", "--replace", "--name", "saleor-migrate",
                "--pull", "never", "--network", "host", "--env-file", ENV_FILE,
                "--secret", RSA_SECRET_ARG, "--user", install["user"], "--read-only",
                "--security-opt", "no-new-privileges", "--cap-drop", "all",
                install["ref"], "python3", "manage.py", "migrate", "--no-input")
    return ("systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--uid=saleor",
            "--gid=saleor", "--property=EnvironmentFile=" + ENV_FILE,
            "--property=WorkingDirectory=/opt/saleor/app", "--setenv=PYTHONPATH=/opt/saleor/app",
            "/opt/saleor/venv/bin/python", "manage.py", "migrate", "--no-input")


class MigrateProgress:
    """Counts the "  Applying app.0001_name... OK" lines of Django's migrate as they come,
    on top of those recorded before it started, and reports them (with the release's total
    where the bundle's dump knows it) at most every REPORT_EVERY s: each report rewrites
    the status file."""

    REPORT_EVERY = 5.0

    def __init__(self, report, before: int, total: int | None):
        self.report, self.total = report, total
        self.applied, self.last, self.reported_at = before, "", 0.0
        report({"task": "migrate", "applied": before, "total": total, "last": None})

    def line(self, text: str) -> None:
        match = APPLYING.match(text)
        if not match:
            return
        self.applied += 1
        self.last = match.group(1)
        now = time.monotonic()
        if now - self.reported_at >= self.REPORT_EVERY or self.applied == self.total:
            self.reported_at = now
            self.report({"task": "migrate", "applied": self.applied, "total": self.total,
                         "last": self.last})


def _first(inputs: Inputs, role: str) -> str:
    peers = inputs.peers.get(role, [])
    if not peers:
        raise AgentError(f"discovery found no {role} node: Saleor needs one")
    return peers[0]["address"]


def _names(values) -> list[str]:
    if isinstance(values, str):
        values = values.split(",")
    return [str(v).strip() for v in values or [] if str(v).strip()]


def _passwd_ids(inputs: Inputs, user: str) -> str:
    """uid:gid of a host user, as podman's --user takes it (a name would be the image's)."""
    for line in inputs.root("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == user:
            return f"{fields[2]}:{fields[3]}"
    raise AgentError(f"no {user} user in /etc/passwd: the image was not installed")


def install(inputs: Inputs) -> dict:
    """How this image carries Saleor (/etc/builder/image.json): the method, the release that
    migrations are keyed on, and for a container its reference and the host user it runs as."""
    try:
        image = json.loads(inputs.root(IMAGE_FILE).read_text())
    except (OSError, ValueError):
        image = {}
    container = image.get("container") or {}
    if container.get("tag") and container.get("ref"):
        return {"method": "container", "release": f"saleor-{container['tag']}",
                "ref": container["ref"], "user": _passwd_ids(inputs, "saleor")}
    bundle = image.get("bundle") or {}
    if not bundle.get("version"):
        raise AgentError(f"{IMAGE_FILE} names no Saleor bundle version or container image")
    return {"method": "bundle", "release": f"{bundle.get('app', 'saleor')}-{bundle['version']}"}


def _rsa_key_secret(inputs: Inputs) -> None:
    """The JWT key as a podman secret; the file it is made from lives only for the call."""
    templating.write(inputs.root, RSA_KEY_FILE,
                     inputs.secrets["saleor_rsa_private_key"].strip() + "\n", mode=0o600)
    try:
        inputs.services.run("podman", "secret", "create", "--replace", RSA_SECRET,
                            RSA_KEY_FILE)
    finally:
        inputs.root(RSA_KEY_FILE).unlink(missing_ok=True)


def context(inputs: Inputs) -> dict:
    node = inputs.node()
    haproxy = _first(inputs, "haproxy")
    redis = _first(inputs, "redis")
    user = inputs.setting("db_user", APP_USER)
    database = inputs.setting("db_name", APP_DATABASE)
    password = quote(inputs.secrets["saleor_db_password"], safe="")
    own = [node["address"], *[p["address"] for p in inputs.peers.get("haproxy", [])],
           "localhost", "127.0.0.1"]
    clients = [p["address"] for role in ("saleor-dashboard", "storefront")
               for p in inputs.peers.get(role, [])]
    return {
        "node": node,
        "secrets": inputs.secrets,
        "database_url": f"postgres://{user}:{password}@{haproxy}:5432/{database}",
        "redis_url": f"redis://:{quote(inputs.secrets['redis_password'], safe='')}@{redis}:6379",
        "allowed_hosts": list(dict.fromkeys(own + _names(inputs.setting("allowed_hosts")))),
        "allowed_client_hosts": list(dict.fromkeys(
            own + clients + _names(inputs.setting("allowed_client_hosts")))),
        "public_url": inputs.setting("public_url", f"http://{haproxy}/"),
    }


def template_context(inputs: Inputs, method: str) -> dict:
    """What saleor.env.j2 and nginx-saleor.conf.j2 get for an install method."""
    return context(inputs) | {"static_root": STATIC_ROOT[method],
                              "rsa_key_secret": RSA_SECRET if method == "container" else None}


def configure(inputs: Inputs) -> dict:
    how = install(inputs)
    container = how["method"] == "container"
    ctx = template_context(inputs, how["method"])
    env = templating.render(inputs.root, ROLE, "saleor.env.j2", ctx)
    templating.write(inputs.root, ENV_FILE, env, mode=0o640, group="saleor")
    if container:
        _rsa_key_secret(inputs)
    site = templating.render(inputs.root, ROLE, "nginx-saleor.conf.j2", ctx)
    templating.write(inputs.root, NGINX_SITE, site)
    inputs.services.run("nginx", "-t", "-q")
    report: dict = {"files": [ENV_FILE, NGINX_SITE], "public_url": ctx["public_url"],
                    "allowed_hosts": ctx["allowed_hosts"]}
    name = how["release"]
    migrate = migrate_command(how)
    report["install"] = how["method"]
    if inputs.services.dry_run:
        inputs.services.run(*migrate)
        report["migrate"] = {"release": name, "dry_run": True}
    else:
        dump = schema.Dump.find(inputs.root(SCHEMA_DIR)) if not container else None
        total = dump.migrations if dump and dump.release == name else None

        def run_migrate(before: int) -> None:
            counter = MigrateProgress(inputs.progress, before, total)
            inputs.services.stream(*migrate, on_line=counter.line, timeout=float(
                inputs.setting("migrate_timeout", 1800)))

        report["migrate"] = {"release": name, **migrations.once(
            ctx["database_url"], "migrate", name, ctx["node"]["name"], run_migrate,
            connect_timeout=float(inputs.setting("db_timeout", 900)),
            lock_timeout=float(inputs.setting("migrate_timeout", 1800)), dump=dump,
            restore_timeout=float(inputs.setting("restore_timeout", 600)))}
    for unit in UNITS:
        inputs.services.restart(unit)
    if not inputs.services.dry_run:
        address = ctx["node"]["address"]
        report["ready_seconds"] = readiness.wait(
            "Saleor GraphQL", readiness.graphql_shop(f"http://{address}:8000/graphql/",
                                                     host=address),
            timeout=float(inputs.setting("ready_timeout", 300)), interval=2.0)
    return report
