"""A booted redis instance: bound to its own address and loopback, password required."""

from __future__ import annotations

import json

from conftest import secret


def _address(host) -> str:
    report = json.loads(host.file("/run/builder/agent.json").content_string)
    return report["identity"]["address"]


def test_redis_running_with_the_rendered_config(host):
    assert host.service("redis-server").is_running
    conf = host.file("/etc/redis/redis.conf")
    assert conf.user == "redis" and conf.mode == 0o640
    assert conf.contains(f"^bind {_address(host)} 127.0.0.1$")


def test_listens_on_own_address_and_loopback_only(host):
    address = _address(host)
    assert host.socket(f"tcp://{address}:6379").is_listening
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening


def test_password_required(host):
    address = _address(host)
    anonymous = host.run("redis-cli -h %s ping", address)
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    authed = host.run("REDISCLI_AUTH=%s redis-cli -h %s ping", secret(host, "redis_password"),
                      address)
    assert authed.stdout.strip() == "PONG", authed.stderr
