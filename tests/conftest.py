"""Suite-wide reporting: each test module's wall time, printed at the end of every run so a CI
log shows where the time goes (fixture set-up counts toward the module that triggered it)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

_module_seconds: dict[str, float] = defaultdict(float)
_module_counts: dict[str, int] = defaultdict(int)
_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.monotonic()
    yield
    module = item.nodeid.split("::", 1)[0]
    _module_seconds[module] += time.monotonic() - started
    _module_counts[module] += 1


def pytest_terminal_summary(terminalreporter):
    if not _module_seconds:
        return
    total = time.monotonic() - _started
    terminalreporter.section("wall time per module")
    for module, seconds in sorted(_module_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {_module_counts[module]:4d} tests  "
                                    f"{module}")
    terminalreporter.write_line(f"{total:8.1f} s  total (collection and session teardown "
                                "included)")


# --------------------------------------------------------------------------- AWS stand-ins
# moto in server mode (a real HTTP endpoint on 127.0.0.1, a thread of this process) and in
# front of it the stand-in for what moto lacks (tests/integration/refresh_standin.py), shared
# by the release tests and the node agent's lifecycle tests.


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def standin(moto_url):
    """The stand-in in front of moto: the endpoint boto3 is given."""
    from integration.refresh_standin import InstanceRefreshStandIn

    server = InstanceRefreshStandIn(moto_url)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def aws_sandbox(moto_url, standin, tmp_path, monkeypatch):
    """boto3 pointed at an emptied stand-in and moto, with test credentials; no profile,
    no ~/.aws and no IMDS are ever asked."""
    import urllib.request

    standin.reset()
    with urllib.request.urlopen(urllib.request.Request(
            f"{moto_url}/moto-api/reset", method="POST"), timeout=10):
        pass
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", standin.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return standin
