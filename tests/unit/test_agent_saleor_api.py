"""The saleor-api boot, rehearsed (tests/unit/test_agent_boot.py explains how): its
environment from peers and secrets, the migration under the cluster-wide lock, the units in
order; and the lock keys the API nodes agree on."""

from __future__ import annotations

import json

import pytest
import yaml

from builder.agent.singleton import lock_key

from .test_agent_boot import commands, mode, prepare, rehearse

ADDRESS = "10.20.0.31"
HAPROXY = [{"name": "haproxy-1", "address": "10.20.0.21"}]
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----\n"


def instance(tmp_path, *, peers: dict | None = None, settings: dict | None = None,
             bundle: dict | None = None, container: dict | None = None):
    secrets = {"saleor_secret_key": "sk", "saleor_rsa_private_key": PEM,
               "saleor_db_password": "p@ss/word", "redis_password": "r:pw"}
    root = prepare(tmp_path, "saleor-api", secrets=secrets, settings=settings, address=ADDRESS)
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["discovery"]["peers"] = {**node["discovery"]["peers"], "haproxy": HAPROXY,
                                  **(peers or {})}
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    image = {"role": "saleor-api", "version": "1.1.0"}
    if container is not None:
        image["container"] = container
        root("/etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                       "saleor:x:996:993::/var/lib/saleor:/usr/sbin/nologin\n")
    else:
        image["bundle"] = bundle if bundle is not None else {"app": "saleor",
                                                              "version": "3.23.28"}
    root("/etc/builder/image.json").write_text(json.dumps(image))
    return root


def env_lines(root) -> dict[str, str]:
    text = root("/etc/saleor/saleor.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith(("#", " ")) and line[0].isupper())


def test_environment_points_at_haproxy_and_redis_with_escaped_secrets(tmp_path):
    root = instance(tmp_path)
    report = rehearse(root)
    assert report["state"] == "ready", report.get("error")
    env = env_lines(root)
    assert env["DATABASE_URL"] == "postgres://saleor:p%40ss%2Fword@10.20.0.21:5432/saleor"
    assert env["CELERY_BROKER_URL"] == "redis://:r%3Apw@10.20.0.51:6379/0"
    assert env["CACHE_URL"] == "redis://:r%3Apw@10.20.0.51:6379/1"
    assert env["DEBUG"] == "False" and env["SEND_USAGE_TELEMETRY"] == "False"
    assert env["PUBLIC_URL"] == "http://10.20.0.21/"
    assert env["ALLOWED_HOSTS"].split(",") == [ADDRESS, "10.20.0.21", "localhost",
                                               "127.0.0.1"]
    assert "10.20.0.41" in env["ALLOWED_CLIENT_HOSTS"].split(",")  # the dashboard
    assert mode(root("/etc/saleor/saleor.env")) == "0o640"


def test_rsa_key_written_as_one_quoted_multiline_value(tmp_path):
    root = instance(tmp_path)
    rehearse(root)
    text = root("/etc/saleor/saleor.env").read_text()
    assert f'RSA_PRIVATE_KEY="{PEM.strip()}"\n' in text


def test_migrate_once_then_units_in_order(tmp_path):
    report = rehearse(instance(tmp_path))
    ran = commands(report)
    migrate = next(i for i, c in enumerate(ran) if c.endswith("manage.py migrate --no-input"))
    assert "--uid=saleor" in ran[migrate]
    assert "--property=EnvironmentFile=/etc/saleor/saleor.env" in ran[migrate]
    assert ran[migrate + 1:] == [f"systemctl restart {u}" for u in
                                 ("saleor-api", "saleor-worker", "saleor-beat", "nginx")]
    assert ran.index("nginx -t -q") < migrate
    assert report["result"]["migrate"]["release"] == "saleor-3.23.28"


CONTAINER = {"image": "ghcr.io/saleor/saleor", "tag": "3.23.28",
             "ref": "ghcr.io/saleor/saleor:3.23.28", "digest": "sha256:" + "a" * 64,
             "stand_in": False}


def test_container_image_migrates_in_the_image_as_the_host_saleor_user(tmp_path):
    report = rehearse(instance(tmp_path, container=CONTAINER))
    assert report["state"] == "ready", report.get("error")
    ran = commands(report)
    migrate = next(i for i, c in enumerate(ran) if c.endswith("manage.py migrate --no-input"))
    assert ran[migrate].startswith("podman run --rm ")
    assert ("--pull never --network host --env-file /etc/saleor/saleor.env --secret "
            "saleor-rsa-private-key,type=env,target=RSA_PRIVATE_KEY --user 996:993 "
            "--read-only") in ran[migrate]
    assert " ghcr.io/saleor/saleor:3.23.28 python3 manage.py migrate" in ran[migrate]
    assert ran[migrate + 1:] == [f"systemctl restart {u}" for u in
                                 ("saleor-api", "saleor-worker", "saleor-beat", "nginx")]
    assert report["result"]["migrate"]["release"] == "saleor-3.23.28"  # as a bundle of 3.23.28
    assert report["result"]["install"] == "container"


def test_container_jwt_key_is_a_podman_secret_not_an_env_line(tmp_path):
    # podman's --env-file cannot carry a multi-line value; the env file holds no key at all.
    root = instance(tmp_path, container=CONTAINER)
    ran = commands(rehearse(root))
    create = ran.index("podman secret create --replace saleor-rsa-private-key "
                       "/etc/saleor/.rsa-private-key.pem")
    assert create < next(i for i, c in enumerate(ran) if c.endswith("migrate --no-input"))
    assert "RSA_PRIVATE_KEY" not in env_lines(root)
    assert "BEGIN PRIVATE KEY" not in root("/etc/saleor/saleor.env").read_text()
    assert not root("/etc/saleor/.rsa-private-key.pem").exists()


def test_nginx_serves_static_from_where_the_method_put_it(tmp_path):
    bundle = instance(tmp_path / "b")
    rehearse(bundle)
    container = instance(tmp_path / "c", container=CONTAINER)
    rehearse(container)
    site = "/etc/nginx/sites-enabled/saleor.conf"
    assert "alias /opt/saleor/app/static/;" in bundle(site).read_text()
    assert "alias /opt/saleor/static/;" in container(site).read_text()


def test_container_image_without_a_saleor_user_fails(tmp_path):
    root = instance(tmp_path, container=CONTAINER)
    root("/etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    report = rehearse(root)
    assert report["state"] == "failed" and "no saleor user" in report["error"]


def test_settings_extend_hosts_and_move_the_public_url(tmp_path):
    root = instance(tmp_path, settings={"allowed_hosts": "shop.example.test",
                                        "public_url": "https://shop.example.test/"})
    rehearse(root)
    env = env_lines(root)
    assert env["ALLOWED_HOSTS"].split(",")[-1] == "shop.example.test"
    assert env["PUBLIC_URL"] == "https://shop.example.test/"


def test_no_haproxy_peer_fails_naming_it(tmp_path):
    report = rehearse(instance(tmp_path, peers={"haproxy": []}))
    assert report["state"] == "failed"
    assert "no haproxy node" in report["error"]


def test_image_without_a_bundle_version_fails(tmp_path):
    report = rehearse(instance(tmp_path, bundle={}))
    assert report["state"] == "failed" and "bundle version" in report["error"]


def test_lock_keys_are_stable_signed_64_bit_and_distinct():
    key = lock_key("saleor-beat")
    assert key == lock_key("saleor-beat") and -2**63 <= key < 2**63
    assert key != lock_key("migrate:saleor-3.23.28")


def test_migrate_progress_counts_applied_lines_on_top_of_the_recorded_ones(monkeypatch):
    """What the status file shows while Saleor migrates (1406 migrations under TCG took
    over 30 minutes with no sign of life): applied of total, reported every few seconds."""
    from builder.agent.roles import saleor_api

    reports = []
    counter = saleor_api.MigrateProgress(reports.append, before=632, total=1406)
    assert reports == [{"task": "migrate", "applied": 632, "total": 1406, "last": None}]
    clock = iter([100.0, 101.0, 107.0])
    monkeypatch.setattr(saleor_api.time, "monotonic", lambda: next(clock))
    for line in ("Operations to perform:", "  Applying account.0081_x... OK",
                 "  Applying account.0082_y... OK", "  Applying order.0190_z... OK",
                 "  No migrations to apply."):
        counter.line(line)
    assert counter.applied == 635 and counter.last == "order.0190_z"
    assert [r["applied"] for r in reports] == [632, 633, 635]  # not one write per line


def test_a_streamed_command_reports_each_line_and_fails_with_its_last_one(tmp_path):
    import sys

    from builder.agent.errors import AgentError
    from builder.agent.services import Services

    lines = []
    script = ("import sys, time\nfor i in range(3):\n    print(f'  Applying a.{i}... OK', "
              "flush=True)\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    services = Services()
    with pytest.raises(AgentError, match="exited 3: boom"):
        services.stream(sys.executable, "-c", script, on_line=lines.append, timeout=30)
    assert lines[:3] == [f"  Applying a.{i}... OK" for i in range(3)]
    with pytest.raises(AgentError, match=r"timed out after 1 s \(last output: started\)"):
        services.stream(sys.executable, "-c", "import time; print('started', flush=True); "
                        "time.sleep(60)", on_line=lines.append, timeout=1)
    assert services.calls[-1]["error"] == "timed out after 1 s"
    dry = Services(dry_run=True)
    dry.stream("false", on_line=lines.append)
    assert dry.calls == [{"argv": ["false"], "dry_run": True}]
