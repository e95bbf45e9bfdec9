"""A booted saleor-api instance: its environment from metadata and secrets, the schema of its
release migrated, uvicorn behind nginx answering GraphQL from the database."""

from __future__ import annotations

import json

import pytest
from conftest import graphql_shop, http

UNITS = ("saleor-api", "saleor-worker", "saleor-beat", "nginx")


@pytest.mark.parametrize("unit", UNITS)
def test_units_running(host, unit):
    assert host.service(unit).is_running


def test_environment_rendered_from_metadata(host, report):
    env = host.file("/etc/saleor/saleor.env")
    assert env.user == "root" and env.group == "saleor" and env.mode == 0o640
    text = env.content_string
    assert "DEBUG=False" in text and "SEND_USAGE_TELEMETRY=False" in text
    haproxy = report["peers"]["haproxy"][0]["address"]
    assert f"@{haproxy}:5432/" in text  # the database only through HAProxy's primary port
    redis = report["peers"]["redis"][0]["address"]
    assert f"@{redis}:6379/0" in text and f"@{redis}:6379/1" in text


def test_rsa_key_reaches_the_service_intact(host, spec):
    if spec["install"] == "container":
        # As the containers get it: the podman secret, exposed as RSA_PRIVATE_KEY.
        cmd = host.run("podman exec saleor-api sh -c 'printf \"%s\\n\" \"$RSA_PRIVATE_KEY\"' "
                       "| openssl pkey -noout && echo key-ok")
    else:
        # systemd's own parsing of the env file, as the units get it: one PEM, not a broken
        # line.
        cmd = host.run("systemd-run --quiet --wait --pipe --collect "
                       "--property=EnvironmentFile=/etc/saleor/saleor.env "
                       "sh -c 'printf \"%s\\n\" \"$RSA_PRIVATE_KEY\" | openssl pkey -noout "
                       "&& echo key-ok'")
    assert "key-ok" in cmd.stdout, cmd.stderr


def test_listens_on_own_address_uvicorn_on_loopback_only(host, report):
    address = report["identity"]["address"]
    assert host.socket(f"tcp://{address}:8000").is_listening
    assert host.socket("tcp://127.0.0.1:8001").is_listening
    assert not host.socket("tcp://0.0.0.0:8001").is_listening


def test_graphql_answers_from_the_database(host, report):
    address = report["identity"]["address"]
    answer = graphql_shop(host, f"http://{address}:8000/graphql/", address)
    assert answer["status"] == 200, answer["body"]
    assert json.loads(answer["body"])["data"]["shop"]["name"]


def test_unknown_host_header_refused(host, report):
    address = report["identity"]["address"]
    answer = graphql_shop(host, f"http://{address}:8000/graphql/", "evil.example.test")
    assert answer["status"] == 400


STATIC = {"bundle": "/opt/saleor/app/static", "container": "/opt/saleor/static"}


def test_static_served_by_nginx(host, report, spec):
    path = host.check_output(f"cd {STATIC[spec['install']]} && find . -type f | head -1")[2:]
    answer = http(host, f"http://{report['identity']['address']}:8000/static/{path}")
    assert answer["status"] == 200


def test_migrations_done_for_this_release(host, report, spec):
    migrate = report["result"]["migrate"]
    image = json.loads(host.file("/etc/builder/image.json").content_string)
    version = image["container"]["tag"] if spec["install"] == "container" else \
        image["bundle"]["version"]
    assert migrate["release"] == f"saleor-{version}"
    assert migrate["by"]  # this node or the one that migrated first


def test_containers_run_as_the_host_saleor_user_read_only(host, spec):
    if spec["install"] != "container":
        pytest.skip("a bundle image")
    uid = host.user("saleor").uid
    for name in ("saleor-api", "saleor-worker"):
        inspect = json.loads(host.check_output("podman inspect %s", name))[0]
        assert inspect["State"]["Running"], name
        assert inspect["Config"]["User"].split(":")[0] == str(uid)
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True
        assert inspect["HostConfig"]["NetworkMode"] == "host"
