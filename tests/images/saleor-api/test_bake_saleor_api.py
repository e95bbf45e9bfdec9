"""saleor-api image: Saleor installed from its bundle alone, nothing configured or running.

The application tests (GraphQL, migrations, beat) need the database and run after boot."""

from __future__ import annotations

import json

from conftest import SAMPLE_NODE, rendered_in_image

VENV = "/opt/saleor/venv/bin/python"


def _bundle(host) -> dict:
    return json.loads(host.file("/opt/saleor/bundle.json").content_string)


def test_venv_uses_the_bundles_runtime(host):
    bundle = _bundle(host)
    version = host.check_output(f"{VENV} -c 'import platform; print(platform.python_version())'")
    assert version.startswith(bundle["runtime"]["python_version"]), version
    if bundle["runtime"]["python"] == "bundled":
        assert host.file("/opt/saleor/python/bin/python3").exists


def test_every_requirement_installed_and_consistent(host):
    check = host.run("/opt/saleor/venv/bin/pip check")
    assert check.rc == 0, check.stdout + check.stderr


def test_entry_points_import(host):
    # What the units start: the ASGI application and the Celery app, from the bundle's tree.
    cmd = host.run("cd /opt/saleor/app && PYTHONPATH=/opt/saleor/app SECRET_KEY=test-only "
                   "%s -c 'import saleor.asgi, saleor.celeryconf; "
                   "print(saleor.asgi.application, saleor.celeryconf.app)'", VENV)
    assert cmd.rc == 0, cmd.stderr


def test_static_files_collected_for_nginx(host):
    count = host.check_output("find /opt/saleor/app/static -type f | wc -l")
    assert int(count) > 0


def test_app_tree_read_only_for_the_service_user(host):
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


def test_rendered_site_accepted_by_this_nginx(host):
    node = dict(SAMPLE_NODE, address="127.0.0.1")
    with rendered_in_image(host, "/usr/share/builder/templates/saleor-api/nginx-saleor.conf.j2",
                           {"node": node}, "/etc/nginx/sites-enabled/builder-test.conf"):
        check = host.run("nginx -t")
    assert check.rc == 0, check.stderr
