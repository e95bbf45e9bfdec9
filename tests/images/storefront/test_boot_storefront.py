"""A booted storefront instance: `node server.js` running as storefront with the environment
the agent rendered for this node, answering HTTP on its own address :3000 only.

Only the server is checked here (this suite must pass against the real storefront, whose
pages need the API); tests/integration checks what a shopper sees."""

from __future__ import annotations

ENV_FILE = "/etc/storefront/storefront.env"

# GET without following redirects (the real `/` redirects to the default channel):
# the status, or "unreachable".
_STATUS = """
import sys, urllib.request, urllib.error
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    print(urllib.request.build_opener(Stay).open(sys.argv[1], timeout=20).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print("unreachable")
"""


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def test_env_file_for_this_node(host, report, address):
    f = host.file(ENV_FILE)
    assert f.user == "root" and f.group == "storefront" and f.mode == 0o640
    assert _env(f.content_string) == {
        "PORT": "3000", "HOSTNAME": report["result"]["bind"],
        "NEXT_PUBLIC_SALEOR_API_URL": report["result"]["api_url"],
        "NEXT_PUBLIC_DEFAULT_CHANNEL": report["result"]["channel"]}


def test_server_runs_as_storefront_with_that_environment(host):
    assert host.service("storefront").is_running
    pid = host.check_output("systemctl show -p MainPID --value storefront")
    assert pid != "0"
    assert host.check_output("stat -c %%U /proc/%s", pid) == "storefront"
    # The node the image installed for the bundle (its own, or the image's through a link).
    assert host.check_output("readlink /proc/%s/exe", pid) == host.check_output(
        "readlink -f /opt/storefront/node/bin/node")
    environ = dict(item.split("=", 1) for item in host.check_output(
        "tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines() if "=" in item)
    for key, value in _env(host.file(ENV_FILE).content_string).items():
        assert environ.get(key) == value, key


def test_listens_where_the_agent_bound_it(host, report, address):
    bind = report["result"]["bind"]
    assert bind in (address, "0.0.0.0")  # 0.0.0.0 only where the host forwards to it (qemu)
    assert host.socket(f"tcp://{bind}:3000").is_listening


def test_answers_http_without_failing_itself(host, address):
    status = host.check_output("python3 -c %s %s", _STATUS, f"http://{address}:3000/")
    assert status.isdigit(), status
    # The real app redirects `/` to the channel's page (307); the stand-in renders the shop
    # (200), or says the API did not answer (502). 500 is the server's own failure.
    assert int(status) < 500 or int(status) in (502, 503, 504), status
