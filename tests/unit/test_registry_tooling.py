"""tests/integration/registry.py for real: a TLS docker-registry, an OCI push, and reads back."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import ssl
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .helpers import REPO


def _load_registry_module():
    """tests/integration is no package (its tests import conftest by name): load by path."""
    if "registry" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "registry", REPO / "tests" / "integration" / "registry.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["registry"] = module
        spec.loader.exec_module(module)
    return sys.modules["registry"]


registry = _load_registry_module()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def running(tmp_path: Path, request):
    """A real docker-registry over TLS; a missing binary fails (make apt installs it)."""
    assert Path(registry.BINARY).exists(), f"{registry.BINARY} missing: run `make apt`"
    reg = registry.Registry(tmp_path / "registry")
    request.addfinalizer(reg.stop)
    return reg.start()


def _tiny_rootfs(path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("etc/", None), ("etc/hello.txt", b"hello from a test layer\n")):
            info = tarfile.TarInfo(name.rstrip("/"))
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


def _get(reg, path: str, accept: str | None = None) -> tuple[dict, bytes]:
    req = urllib.request.Request(reg.url(path), headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, context=reg.ssl_context(), timeout=30) as resp:
        return dict(resp.headers), resp.read()


def test_push_and_read_back_over_tls(running, tmp_path):
    rootfs = _tiny_rootfs(tmp_path / "rootfs.tar")
    config = registry.saleor_standin_config("0.0.1")
    digest = registry.push_image(running, "saleor/saleor", "0.0.1", rootfs, config)
    assert digest.startswith("sha256:")

    headers, body = _get(running, "/v2/saleor/saleor/manifests/0.0.1", accept=OCI_MANIFEST)
    assert headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    manifest = json.loads(body)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert headers["Content-Type"] == OCI_MANIFEST
    (layer,) = manifest["layers"]

    _, blob = _get(running, f"/v2/saleor/saleor/blobs/{layer['digest']}")
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    assert len(blob) == layer["size"]
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        assert tar.extractfile("etc/hello.txt").read() == b"hello from a test layer\n"

    _, raw = _get(running, f"/v2/saleor/saleor/blobs/{manifest['config']['digest']}")
    image = json.loads(raw)
    assert (image["architecture"], image["os"]) == ("amd64", "linux")
    assert image["rootfs"]["diff_ids"] == [
        "sha256:" + hashlib.sha256(rootfs.read_bytes()).hexdigest()]
    assert image["config"]["Labels"]["builder.stand_in"] == "true"
    assert image["config"]["WorkingDir"] == "/app"

    # pushing the same layer again reuses the blob and gives a manifest digest again
    again = registry.push_image(running, "saleor/saleor", "again", rootfs, config,
                                created=image["created"])
    assert again == digest


def test_tls_is_required_and_verified(running):
    # Only TLS verified against the test CA reaches the registry: the system trust store
    # rejects its certificate (and a plain-HTTP registry would fail differently).
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(running.url("/v2/"), context=ssl.create_default_context(),
                               timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    headers, _ = _get(running, "/v2/")
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"

    running.stop()
    assert running.proc is None
    running.stop()  # twice is fine
