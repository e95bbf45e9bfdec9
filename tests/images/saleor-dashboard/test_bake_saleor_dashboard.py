"""saleor-dashboard image: the dashboard installed from its bundle alone, nginx accepting the
site the agent renders, nothing served until the agent has written the API URL at boot.

tests/images/common checks the spec-driven rest (nginx disabled and stopped, nothing
listening but ssh)."""

from __future__ import annotations

import json

from conftest import SAMPLE_NODE, rendered_in_image

APP = "/opt/saleor-dashboard"


def _bundle(host) -> dict:
    return json.loads(host.file(f"{APP}/bundle.json").content_string)


def test_built_dashboard_installed_with_its_pristine_index(host):
    index = host.file(f"{APP}/index.html")
    pristine = host.file(f"{APP}/index.html.orig")
    assert index.is_file and pristine.is_file
    assert pristine.content_string == index.content_string
    assert int(host.check_output("find %s -type f -name '*.js' | wc -l", APP)) > 0


def test_agent_finds_the_api_url_placeholder(host):
    # The baked agent's own rewrite, with the image's python3: what the boot will do.
    script = ("import sys; sys.path.insert(0, '/usr/lib/builder-agent')\n"
              "from builder.agent.roles.saleor_dashboard import PRISTINE, with_api_url\n"
              "text = with_api_url(open(PRISTINE).read(), 'http://lb.test/graphql/', PRISTINE)\n"
              "print('\"http://lb.test/graphql/\"' in text)\n")
    run = host.run("python3 -c %s", script)
    assert run.rc == 0, run.stderr
    assert run.stdout.strip() == "True"


def test_tree_is_roots_and_world_readable(host):
    app = host.file(APP)
    assert app.user == "root" and app.mode == 0o755
    odd = host.check_output(
        "find %s \\( ! -user root -o -type d ! -perm 0755 -o -type f ! -perm 0644 "
        "-o -type l \\) -print", APP)
    assert odd == ""


def test_no_default_nginx_site(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert host.check_output("ls -A /etc/nginx/sites-enabled") == ""


def test_nothing_listens_on_9000_before_boot(host):
    assert not [s for s in host.socket.get_listening_sockets() if s.endswith(":9000")]


def test_rendered_site_accepted_by_this_nginx(host):
    node = dict(SAMPLE_NODE, address="127.0.0.1")
    with rendered_in_image(host, "/usr/share/builder/templates/saleor-dashboard/"
                           "nginx-dashboard.conf.j2", {"node": node, "port": 9000},
                           "/etc/nginx/sites-enabled/builder-test.conf"):
        check = host.run("nginx -t")
    assert check.rc == 0, check.stderr
