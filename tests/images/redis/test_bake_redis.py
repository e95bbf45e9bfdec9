"""redis image: Debian 13's Redis, nothing listening until the agent binds it at boot."""

from __future__ import annotations

from conftest import SAMPLE_NODE, rendered_in_image


def test_redis_installed(host):
    assert host.file("/usr/bin/redis-server").is_file


def test_rendered_config_binds_private_address_with_password(host):
    context = {"node": SAMPLE_NODE, "secrets": {"redis_password": "sample"},
               "maxmemory": "256mb"}
    with rendered_in_image(host, "/usr/share/builder/templates/redis/redis.conf.j2", context,
                           "/tmp/redis-test.conf") as path:
        text = host.check_output("cat %s", path)
    assert "bind 10.20.0.11 127.0.0.1" in text
    assert "requirepass sample" in text
    assert "maxmemory-policy volatile-lru" in text
