"""The saleor-dashboard and storefront boots, rehearsed (tests/unit/test_agent_boot.py
explains how): the API URL written into the dashboard's index.html from its pristine copy,
the nginx site and storefront.env for this node, defaults from the haproxy peer, settings,
one-line failures; and the storefront's readiness probe against a local HTTP server."""

from __future__ import annotations

import http.server
import socketserver
import threading

import pytest
import yaml

from builder.agent.errors import AgentError
from builder.agent.roles import saleor_dashboard, storefront

from .test_agent_boot import commands, mode, prepare, rehearse

ADDRESS = {"saleor-dashboard": "10.20.0.41", "storefront": "10.20.0.61"}
# Sorted by name, haproxy-0 is the first: its address is the default API host.
HAPROXY = [{"name": "haproxy-1", "address": "10.20.0.22"},
           {"name": "haproxy-0", "address": "10.20.0.21"}]
DEFAULT_API = "http://10.20.0.21/graphql/"

# The shape of a built dashboard's index.html (src/index.html with the build's values).
INDEX_ORIG = """<!doctype html>
<html>
  <head>
    <meta charset="UTF-8" />
    <title>Dashboard</title>
    <script>
      window.__SALEOR_CONFIG__ = {
        API_URL: "http://localhost:8000/graphql/",
        APP_MOUNT_URI: "/",
        STATIC_URL: "/",
        LOCALE_CODE: "EN",
      };
    </script>
    <script type="module" crossorigin src="/index-Bx3k9aQe.js"></script>
  </head>
  <body><div id="dashboard-app"></div></body>
</html>
"""


def instance(tmp_path, role: str, *, haproxy: list | None = HAPROXY,
             settings: dict | None = None, index: str | None = INDEX_ORIG):
    """A `role` instance right after cloud-init, with what its bake left behind."""
    root = prepare(tmp_path, role, settings=settings, address=ADDRESS[role])
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    if haproxy:
        node["discovery"]["peers"]["haproxy"] = haproxy
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    if role == "saleor-dashboard" and index is not None:
        root(saleor_dashboard.PRISTINE).parent.mkdir(parents=True)
        root(saleor_dashboard.PRISTINE).write_text(index)
    return root


def ready(root) -> dict:
    report = rehearse(root)
    assert report["state"] == "ready", report.get("error")
    return report


def failed(root) -> str:
    report = rehearse(root)
    assert report["state"] == "failed"
    assert "\n" not in report["error"]
    return report["error"]


def env_file(root) -> dict[str, str]:
    text = root(storefront.ENV_FILE).read_text()
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


# saleor-dashboard

def test_dashboard_gets_the_api_behind_the_first_haproxy_and_restarts_nginx(tmp_path):
    root = instance(tmp_path, "saleor-dashboard")
    report = ready(root)
    assert report["result"]["api_url"] == DEFAULT_API
    assert report["result"]["files"] == [saleor_dashboard.INDEX, saleor_dashboard.SITE]
    assert commands(report) == ["nginx -t -q", "systemctl restart nginx"]


def test_index_html_differs_from_the_pristine_copy_in_api_url_only(tmp_path):
    root = instance(tmp_path, "saleor-dashboard")
    ready(root)
    index = root(saleor_dashboard.INDEX)
    assert index.read_text() == INDEX_ORIG.replace("http://localhost:8000/graphql/",
                                                   DEFAULT_API)
    assert mode(index) == "0o644"
    assert root(saleor_dashboard.PRISTINE).read_text() == INDEX_ORIG


def test_every_boot_writes_from_the_pristine_copy(tmp_path):
    root = instance(tmp_path, "saleor-dashboard")
    ready(root)
    first = root(saleor_dashboard.INDEX).read_text()
    ready(root)
    assert root(saleor_dashboard.INDEX).read_text() == first
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["settings"]["api_url"] = "https://api.shop.test/graphql/"
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    ready(root)
    text = root(saleor_dashboard.INDEX).read_text()
    assert 'API_URL: "https://api.shop.test/graphql/",' in text
    assert DEFAULT_API not in text


def test_settings_api_url_overrides_the_haproxy_default(tmp_path):
    root = instance(tmp_path, "saleor-dashboard",
                    settings={"api_url": "https://api.shop.test/graphql/"})
    assert ready(root)["result"]["api_url"] == "https://api.shop.test/graphql/"
    assert 'API_URL: "https://api.shop.test/graphql/",' in root(
        saleor_dashboard.INDEX).read_text()


def test_settings_api_url_without_haproxy(tmp_path):
    root = instance(tmp_path, "saleor-dashboard", haproxy=None,
                    settings={"api_url": "http://10.20.0.99/graphql/"})
    assert ready(root)["result"]["api_url"] == "http://10.20.0.99/graphql/"


def test_site_listens_on_the_private_address_with_spa_fallback(tmp_path):
    root = instance(tmp_path, "saleor-dashboard")
    ready(root)
    site = root(saleor_dashboard.SITE)
    assert mode(site) == "0o644"
    lines = [" ".join(line.split()) for line in site.read_text().splitlines()]
    assert "listen 10.20.0.41:9000;" in lines
    assert "root /opt/saleor-dashboard;" in lines
    assert "try_files $uri $uri/ /index.html;" in lines
    assert 'add_header Cache-Control "no-cache" always;' in lines
    assert 'add_header Cache-Control "public, max-age=31536000, immutable";' in lines


def test_no_haproxy_and_no_setting_is_one_line_naming_both(tmp_path):
    root = instance(tmp_path, "saleor-dashboard", haproxy=None)
    error = failed(root)
    assert error.startswith("role: no haproxy peer") and "settings.api_url" in error
    assert not root(saleor_dashboard.INDEX).exists()


@pytest.mark.parametrize("value", ['http://x/"; alert(1); "', "ftp://x/graphql/",
                                   "http://x/graph ql/", 42])
def test_api_url_that_could_break_out_of_the_string_is_refused(tmp_path, value):
    root = instance(tmp_path, "saleor-dashboard", settings={"api_url": value})
    assert failed(root).startswith("role: settings.api_url must be an http(s) URL")
    assert not root(saleor_dashboard.INDEX).exists()


def test_index_without_the_placeholder_fails_the_boot_before_nginx(tmp_path):
    root = instance(tmp_path, "saleor-dashboard",
                    index="<html><script>window.__SALEOR_CONFIG__ = {};</script></html>\n")
    report = rehearse(root)
    assert report["state"] == "failed"
    assert report["error"].startswith(f"role: {root(saleor_dashboard.PRISTINE)}: no API_URL")
    assert commands(report) == []


def test_missing_pristine_copy_is_named(tmp_path):
    root = instance(tmp_path, "saleor-dashboard", index=None)
    assert failed(root) == (f"role: {root(saleor_dashboard.PRISTINE)}: cannot read the baked "
                            "dashboard (No such file or directory)")


@pytest.mark.parametrize(("html", "expected"), [
    # Only the config object's API_URL, only its value; its neighbours and the rest stay.
    ('<script>const API_URL: "a";</script><script>window.__SALEOR_CONFIG__ = '
     '{ APP_MOUNT_URI: "/", API_URL: "old", X_API_URL: "k" };</script>',
     '<script>const API_URL: "a";</script><script>window.__SALEOR_CONFIG__ = '
     '{ APP_MOUNT_URI: "/", API_URL: "NEW", X_API_URL: "k" };</script>'),
    # A minified build writes no spaces.
    ('window.__SALEOR_CONFIG__={API_URL:"",LOCALE_CODE:"EN"}',
     'window.__SALEOR_CONFIG__={API_URL:"NEW",LOCALE_CODE:"EN"}'),
])
def test_api_url_rewrite_shapes(html, expected):
    assert saleor_dashboard.with_api_url(html, "NEW", "index.html.orig") == expected


def test_api_url_after_the_config_object_is_no_placeholder():
    html = 'window.__SALEOR_CONFIG__ = { LOCALE_CODE: "EN" }; var c = { API_URL: "x" };'
    with pytest.raises(AgentError, match="no API_URL"):
        saleor_dashboard.with_api_url(html, "NEW", "index.html.orig")


# storefront

def test_storefront_env_for_this_node_and_the_default_channel(tmp_path):
    root = instance(tmp_path, "storefront")
    report = ready(root)
    # 0.0.0.0 on qemu: the host's forward arrives on the management NIC.
    assert env_file(root) == {"PORT": "3000", "HOSTNAME": "0.0.0.0",
                              "NEXT_PUBLIC_SALEOR_API_URL": DEFAULT_API,
                              "NEXT_PUBLIC_DEFAULT_CHANNEL": "default-channel"}
    assert mode(root(storefront.ENV_FILE)) == "0o640"
    assert commands(report) == ["systemctl restart storefront"]
    assert report["result"] == {"files": [storefront.ENV_FILE], "api_url": DEFAULT_API,
                                "channel": "default-channel", "bind": "0.0.0.0"}


def test_storefront_binds_the_private_address_off_qemu(tmp_path):
    root = instance(tmp_path, "storefront")
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["target"] = "aws"
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    ready(root)
    assert env_file(root)["HOSTNAME"] == "10.20.0.61"


def test_storefront_settings_override_api_and_channel(tmp_path):
    root = instance(tmp_path, "storefront", haproxy=None,
                    settings={"api_url": "https://api.shop.test/graphql/", "channel": "eu_2"})
    ready(root)
    env = env_file(root)
    assert env["NEXT_PUBLIC_SALEOR_API_URL"] == "https://api.shop.test/graphql/"
    assert env["NEXT_PUBLIC_DEFAULT_CHANNEL"] == "eu_2"


def test_storefront_without_haproxy_fails_before_starting(tmp_path):
    root = instance(tmp_path, "storefront", haproxy=None)
    report = rehearse(root)
    assert report["state"] == "failed" and report["error"].startswith("role: no haproxy peer")
    assert commands(report) == [] and not root(storefront.ENV_FILE).exists()


@pytest.mark.parametrize("value", ["default channel", "x\nNODE_OPTIONS=--inspect", ""])
def test_storefront_channel_must_be_a_slug(tmp_path, value):
    root = instance(tmp_path, "storefront", settings={"channel": value})
    assert failed(root).startswith("role: settings.channel must be a Saleor channel slug")
    assert not root(storefront.ENV_FILE).exists()


class _Answers(http.server.BaseHTTPRequestHandler):
    """/: 307 to /broken, like the real storefront's `/`; /broken: 502, like the stand-in's
    `/` without the API; /missing: 404."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        code = {"/": 307, "/broken": 502, "/missing": 404}[self.path]
        self.send_response(code)
        if code == 307:
            self.send_header("Location", "/broken")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _NotHttp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"SSH-2.0-OpenSSH_10.0\r\n")


def _serve(server_class, handler):
    server = server_class(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def servers():
    """An HTTP server and a TCP server speaking something else, on loopback."""
    started = [_serve(http.server.ThreadingHTTPServer, _Answers),
               _serve(socketserver.ThreadingTCPServer, _NotHttp)]
    yield [f"http://127.0.0.1:{server.server_address[1]}" for server, _ in started]
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("path", "status"), [("/", 307), ("/broken", 502), ("/missing", 404)])
def test_storefront_ready_on_any_http_answer_without_following_redirects(servers, path,
                                                                        status):
    seen: dict = {}
    assert storefront.answers(servers[0] + path, seen)() is True
    assert seen == {"status": status}


def test_storefront_not_ready_while_the_port_speaks_something_else(servers):
    seen: dict = {}
    assert storefront.answers(servers[1] + "/", seen)() is False
    assert seen == {}
