"""A booted saleor-dashboard instance: nginx serving the dashboard on its own address :9000
only, index.html carrying the API URL the agent reported, every unknown path answered with
the app (client-side routes), index.html revalidated and hashed assets cached."""

from __future__ import annotations

import re

import pytest
from conftest import http

APP = "/opt/saleor-dashboard"
HASHED = re.compile(r"-[A-Za-z0-9_-]{8}\.(?:js|css)$")
# The value of API_URL in window.__SALEOR_CONFIG__, as the dashboard's index.html has it.
API_URL = re.compile(r'window\.__SALEOR_CONFIG__\s*=\s*\{[^}]*?\bAPI_URL\s*:\s*"([^"]*)"')


@pytest.fixture(scope="module")
def base(report) -> str:
    return f"http://{report['identity']['address']}:9000"


def test_nginx_running_with_the_rendered_site(host, report):
    assert host.service("nginx").is_running
    site = host.file("/etc/nginx/sites-enabled/saleor-dashboard.conf")
    assert site.user == "root" and site.mode == 0o644
    assert site.contains(f"listen {report['identity']['address']}:9000;")


def test_listens_on_own_address_only(host, report):
    assert host.socket(f"tcp://{report['identity']['address']}:9000").is_listening
    assert not host.socket("tcp://0.0.0.0:9000").is_listening
    assert not host.socket("tcp://0.0.0.0:80").is_listening  # Debian's default site is gone


def test_index_carries_the_reported_api_url(host, report, base):
    served = http(host, f"{base}/")
    assert served["status"] == 200
    assert served["headers"]["Cache-Control"] == "no-cache"
    assert served["body"] == host.file(f"{APP}/index.html").content_string
    # The pristine copy, kept for the next boot, with only the URL replaced.
    pristine = host.file(f"{APP}/index.html.orig").content_string
    found = API_URL.search(pristine)
    assert found, "index.html.orig has no API_URL in window.__SALEOR_CONFIG__"
    url = report["result"]["api_url"]
    assert served["body"] == pristine[:found.start(1)] + url + pristine[found.end(1):]


def test_client_side_routes_get_the_app(host, base):
    index = http(host, f"{base}/")["body"]
    for path in ("/orders/", "/products/UHJvZHVjdDox/variant/3", "/no-such-page"):
        deep = http(host, base + path)
        assert deep["status"] == 200, path
        assert deep["body"] == index, path


def test_a_missing_asset_is_a_404_not_the_page(host, base):
    assert http(host, f"{base}/index-0000abcd.js")["status"] == 404


def test_hashed_assets_cached_for_good(host, base):
    names = host.check_output("find %s -maxdepth 2 -type f -printf '%%P\\n'", APP).split()
    hashed = [n for n in names if HASHED.search(n)]
    assert hashed, "a built dashboard has content-hashed assets (vite names them so)"
    asset = http(host, f"{base}/{hashed[0]}")
    assert asset["status"] == 200
    assert "immutable" in asset["headers"]["Cache-Control"]


def test_pristine_copy_and_manifest_not_served(host, base):
    for path in ("/index.html.orig", "/bundle.json"):
        assert http(host, base + path)["status"] == 404, path
