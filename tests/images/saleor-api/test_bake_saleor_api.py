"""saleor-api image: Saleor installed by the spec's method — from its bundle alone, or as the
container image pulled during the bake — nothing configured or running.

The application tests (GraphQL, migrations, beat) need the database and run after boot."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLE_NODE, rendered_in_image

VENV = "/opt/saleor/venv/bin/python"
STATIC = {"bundle": "/opt/saleor/app/static", "container": "/opt/saleor/static"}


@pytest.fixture
def bundled(spec):
    if spec["install"] != "bundle":
        pytest.skip("a container image (its own tests below)")


@pytest.fixture
def container(spec, host) -> dict:
    if spec["install"] != "container":
        pytest.skip("a bundle image (its own tests above)")
    return json.loads(host.file("/etc/builder/image.json").content_string)["container"]


def _bundle(host) -> dict:
    return json.loads(host.file("/opt/saleor/bundle.json").content_string)


def test_venv_uses_the_bundles_runtime(host, bundled):
    bundle = _bundle(host)
    version = host.check_output(f"{VENV} -c 'import platform; print(platform.python_version())'")
    assert version.startswith(bundle["runtime"]["python_version"]), version
    if bundle["runtime"]["python"] == "bundled":
        assert host.file("/opt/saleor/python/bin/python3").exists


def test_every_requirement_installed_and_consistent(host, bundled):
    check = host.run("/opt/saleor/venv/bin/pip check")
    assert check.rc == 0, check.stdout + check.stderr


def test_entry_points_import(host, bundled):
    # What the units start: the ASGI application and the Celery app, from the bundle's tree.
    cmd = host.run("cd /opt/saleor/app && PYTHONPATH=/opt/saleor/app SECRET_KEY=test-only "
                   "%s -c 'import saleor.asgi, saleor.celeryconf; "
                   "print(saleor.asgi.application, saleor.celeryconf.app)'", VENV)
    assert cmd.rc == 0, cmd.stderr


def test_static_files_collected_for_nginx(host, spec):
    count = host.check_output(f"find {STATIC[spec['install']]} -type f | wc -l")
    assert int(count) > 0


def test_image_pulled_is_the_one_the_spec_names(host, spec, container):
    assert container["ref"] == spec["container"]["image"] + ":" + spec["container"]["tag"] + (
        "@" + spec["container"]["digest"] if spec["container"]["digest"] else "")
    inspect = json.loads(host.check_output("podman image inspect %s", container["ref"]))[0]
    assert inspect["Digest"] == container["digest"]
    assert str(container["stand_in"]).lower() == inspect["Labels"].get("builder.stand_in",
                                                                        "false")


def test_bake_left_no_container_and_no_registry_mirror(host, container):
    assert host.check_output("podman ps --all --quiet") == ""
    assert not host.file("/etc/containers/registries.conf.d/90-builder-mirrors.conf").exists


def test_quadlet_makes_the_units_from_the_pulled_image(host, container):
    for unit in ("saleor-api", "saleor-worker"):
        text = host.check_output("systemctl cat %s.service", unit)
        assert "podman run" in text and container["ref"] in text, text
        assert "--pull never" in text and "--read-only" in text
        assert host.run("systemctl is-enabled %s.service", unit).stdout.strip() == "generated"
        assert not host.service(unit).is_running
    beat = host.file("/etc/systemd/system/saleor-beat.service").content_string
    assert container["ref"] in beat and "@" + "IMAGE@" not in beat


def test_entry_points_import_inside_the_image(host, container):
    # As the units run it: the host's saleor uid, a read-only tree, no network needed.
    user = host.user("saleor")
    cmd = host.run("podman run --rm --pull never --network none --read-only --user %s "
                   "--env SECRET_KEY=test-only %s python3 -c 'import saleor.asgi, "
                   "saleor.celeryconf; print(saleor.asgi.application, saleor.celeryconf.app)'",
                   f"{user.uid}:{user.gid}", container["ref"])
    assert cmd.rc == 0, cmd.stderr


def test_app_tree_read_only_for_the_service_user(host, bundled):
    assert host.user("saleor").shell == "/usr/sbin/nologin"
    app = host.file("/opt/saleor/app")
    assert app.user == "root" and app.mode & 0o022 == 0
    writable = host.run("runuser -u saleor -- test -w /opt/saleor/app/manage.py")
    assert writable.rc != 0
    media = host.file("/var/lib/saleor/media")
    assert media.user == "saleor" and media.mode == 0o750


def test_no_environment_or_secret_baked(host):
    assert not host.file("/etc/saleor/saleor.env").exists
    etc = host.file("/etc/saleor")
    assert etc.user == "root" and etc.group == "saleor" and etc.mode == 0o750


def test_beat_wrapper_and_its_client_installed(host):
    assert host.file("/usr/local/sbin/builder-singleton").mode == 0o755
    usage = host.run("/usr/local/sbin/builder-singleton --help")
    assert usage.rc == 0 and "--name" in usage.stdout
    assert host.run("python3 -c 'import psycopg'").rc == 0


def test_no_default_nginx_site(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_rendered_site_accepted_by_this_nginx(host, spec):
    node = dict(SAMPLE_NODE, address="127.0.0.1")
    with rendered_in_image(host, "/usr/share/builder/templates/saleor-api/nginx-saleor.conf.j2",
                           {"node": node, "static_root": STATIC[spec["install"]]},
                           "/etc/nginx/sites-enabled/builder-test.conf"):
        check = host.run("nginx -t")
    assert check.rc == 0, check.stderr


def test_a_bundled_schema_dump_is_installed_and_restorable_here(host, bundled):
    """With `--schema-dump`, the dump and a pg_restore at least as new as the PostgreSQL
    that made it (pg_restore reads older archives, not newer ones)."""
    shipped = _bundle(host)["runtime"].get("schema")
    manifest = host.file("/opt/saleor/schema/schema.json")
    if shipped is None:
        assert not manifest.exists
        return
    dump = json.loads(manifest.content_string)
    assert host.file(f"/opt/saleor/schema/{dump['file']}").size > 0
    assert dump["postgres_major"] == shipped["postgres_major"]
    version = host.check_output("pg_restore --version").split()[-1]
    assert int(version.split(".")[0]) >= dump["postgres_major"], version


def test_the_app_tree_is_precompiled_for_the_venvs_python(host, bundled):
    """The service user cannot write __pycache__ under /opt/saleor/app: without bytecode
    baked, each start would compile every module again."""
    tag = host.check_output(f"{VENV} -c 'import sys; print(sys.implementation.cache_tag)'")
    found = host.run(f"find /opt/saleor/app/saleor -name '__init__.{tag}.pyc' | head -1")
    assert found.stdout.strip(), f"no {tag} bytecode under /opt/saleor/app/saleor"
    missing = host.run("cd /opt/saleor/app && for f in saleor/asgi*.py saleor/asgi/__init__.py "
                       "saleor/celeryconf.py; do [ -e \"$f\" ] || continue; "
                       f"d=$(dirname $f); b=$(basename $f .py); "
                       f"[ -e \"$d/__pycache__/$b.{tag}.pyc\" ] || echo $f; done")
    assert missing.stdout.strip() == "", missing.stdout
