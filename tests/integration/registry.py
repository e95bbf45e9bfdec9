"""A local container registry over TLS holding a stand-in of `ghcr.io/saleor/saleor:<version>`.

Integration tests give a bake VM (QEMU user networking: the host's 127.0.0.1 is 10.0.2.2 in
the VM) a registry mirror `ghcr.io` -> `10.0.2.2:<port>` and our test CA as an extra CA, and
podman in the VM pulls `ghcr.io/saleor/saleor:<version>` from here. Pieces: make_tls() (a test
CA and a server certificate), Registry (Debian's real `docker-registry`, distribution 2.8),
push_image() (Registry HTTP API V2, one-layer OCI image) and build_saleor_standin_rootfs()
(mmdebstrap) with saleor_standin_config().

The stand-in follows the contract of Saleor's own Dockerfile (saleor/saleor, `Dockerfile`,
python:3.12-slim based), as far as a deployment can see it:

- copied: WORKDIR `/app` holding the source tree (`manage.py`, `saleor/`); static files
  collected at build time into `/app/static` (`SECRET_KEY=dummy STATIC_URL=/static/ python3
  manage.py collectstatic --no-input`); an empty `/app/media`; a system user and group `saleor`
  (`groupadd -r saleor && useradd -r -g saleor saleor`) owning `/app/static` and `/app/media`,
  but no USER instruction, so the container runs as root like the real one; ENV
  `PYTHONUNBUFFERED=1` and `STATIC_URL=/static/` (and the python image's `LANG=C.UTF-8`);
  EXPOSE 8000; libpq5 and libmagic among the runtime libraries; and the CMD exactly:
  `uvicorn saleor.asgi:application --host=0.0.0.0 --port=8000 --workers=2 --lifespan=auto
  --ws=none --no-server-header --no-access-log --timeout-keep-alive=35
  --timeout-graceful-shutdown=30 --limit-max-requests=10000`.
- different: Debian's python3 (trixie: 3.13, /usr/bin) instead of python.org's 3.12 in
  /usr/local; the requirements in a venv `/app/.venv` (first on PATH, so `python3`, `uvicorn`
  and `celery` resolve there as they resolve to /usr/local/bin in the real image) instead of
  the system site-packages; `PYTHONPATH=/app` added; the application is the bundle's (the test
  stand-in under tests/fixtures/saleor-standin), not Saleor; one layer built by mmdebstrap;
  labels say it is a stand-in (`org.opencontainers.image.title=saleor-standin`,
  `builder.stand_in=true`).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import http.client
import ipaddress
import json
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path

BINARY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
VM_HOST = "10.0.2.2"  # the host's 127.0.0.1 as seen from a QEMU user-networking guest
_CHUNK = 1 << 20


# --- TLS -----------------------------------------------------------------------------------

def make_tls(dir: Path, ip: str = VM_HOST) -> tuple[Path, Path, Path]:
    """A fresh test CA and a server cert/key it signs, valid for the VM's view of the host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "builder test CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "builder tests")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for addr in dict.fromkeys((ip, "127.0.0.1")):
        names.append(x509.IPAddress(ipaddress.ip_address(addr)))
    names.append(x509.DNSName("localhost"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                    "builder test registry")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem, cert_pem, key_pem = dir / "ca.pem", dir / "server.pem", dir / "server-key.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.touch(mode=0o600)
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


# --- the registry --------------------------------------------------------------------------

def _free_port() -> int:
    """A port free on 127.0.0.1 right now (the registry binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's real docker-registry on 127.0.0.1:<free port> over TLS, as a context manager."""

    def __init__(self, dir: Path, tls: tuple[Path, Path, Path] | None = None,
                 binary: str = BINARY, start_timeout: float = 15.0):
        """Files (config, storage, log, TLS unless given) go to dir."""
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = tls or make_tls(self.dir / "tls")
        self.binary = binary
        self.start_timeout = start_timeout
        self.config = self.dir / "config.yml"
        self.storage = self.dir / "storage"
        self.log = self.dir / "registry.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    # addresses
    @property
    def address(self) -> str:
        """host:port as the host reaches it."""
        return f"127.0.0.1:{self.port}"

    def vm_address(self, ip: str = VM_HOST) -> str:
        """host:port as a QEMU user-networking guest reaches it (the registry-mirror value)."""
        return f"{ip}:{self.port}"

    @property
    def base_url(self) -> str:
        """https://127.0.0.1:<port>"""
        return f"https://{self.address}"

    def url(self, path: str = "/v2/") -> str:
        """An absolute URL of this registry for path."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def connection(self, timeout: float = 60) -> http.client.HTTPSConnection:
        """A fresh HTTPS connection to the registry, verified against the test CA."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(),
                                           timeout=timeout, blocksize=_CHUNK)

    # lifecycle
    def _write_config(self) -> None:
        """The registry's config: filesystem storage here, TLS, no auth, loopback only."""
        self.storage.mkdir(exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text",
                    "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "cache": {"blobdescriptor": "inmemory"}},
            "http": {"addr": self.address, "secret": secrets.token_hex(16),
                     "tls": {"certificate": str(self.cert), "key": str(self.key)},
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        # JSON is YAML: no PyYAML needed and no quoting surprises in paths.
        self.config.write_text(json.dumps(config, indent=2) + "\n")

    def _log_tail(self, lines: int = 30) -> str:
        """The end of the registry's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ready(self) -> bool:
        """Whether GET /v2/ answers 200 over verified TLS."""
        try:
            conn = self.connection(timeout=2)
            try:
                conn.request("GET", "/v2/")
                resp = conn.getresponse()
                resp.read()
                return resp.status == 200
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def start(self) -> Registry:
        """Start the registry and wait (bounded) until /v2/ answers 200 with our CA."""
        if not Path(self.binary).exists():
            raise RuntimeError(f"{self.binary} is missing: install Debian's docker-registry "
                               "(make apt)")
        for attempt in range(3):  # another process may take the free port before we bind it
            self.port = _free_port()
            self._write_config()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen([self.binary, "serve", str(self.config)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             cwd=self.dir, start_new_session=True)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._ready():
                    return self
                time.sleep(0.1)
            code = self.proc.poll()
            self.stop()
            if code is not None and "address already in use" in self._log_tail() \
                    and attempt < 2:
                continue
            why = (f"exited with status {code}" if code is not None
                   else f"did not answer within {self.start_timeout:.0f}s")
            raise RuntimeError(f"docker-registry {why}; log {self.log}:\n{self._log_tail()}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Terminate the registry: SIGTERM, wait, then SIGKILL; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> Registry:
        """Started on entry."""
        return self.start()

    def __exit__(self, *exc) -> None:
        """Always stopped on exit."""
        self.stop()


# --- pushing an image ----------------------------------------------------------------------

def _request(registry: Registry, method: str, path_or_url: str, body=None,
             headers: dict | None = None, expect: tuple[int, ...] = (200,)):
    """One verified request to the registry; returns (response, body bytes)."""
    parts = urllib.parse.urlsplit(path_or_url)
    if parts.netloc and parts.netloc != registry.address:
        raise RuntimeError(f"the registry sent us to another host: {path_or_url}")
    target = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
    conn = registry.connection(timeout=300)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status not in expect:
        raise RuntimeError(f"{method} {target}: HTTP {resp.status} "
                           f"{data[:500].decode(errors='replace')}")
    return resp, data


def _upload_blob(registry: Registry, repo: str, digest: str, size: int, body) -> None:
    """Monolithic upload (POST, then PUT with the digest), unless the blob is there."""
    resp, _ = _request(registry, "HEAD", f"/v2/{repo}/blobs/{digest}", expect=(200, 404))
    if resp.status == 200:
        return
    resp, _ = _request(registry, "POST", f"/v2/{repo}/blobs/uploads/", body=b"",
                       headers={"Content-Length": "0"}, expect=(202,))
    location = resp.getheader("Location")
    if not location:
        raise RuntimeError("the registry gave no upload Location")
    sep = "&" if "?" in location else "?"
    resp, _ = _request(registry, "PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                       body=body, headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(size)}, expect=(201,))
    if resp.getheader("Docker-Content-Digest") not in (None, digest):
        raise RuntimeError(f"blob stored as {resp.getheader('Docker-Content-Digest')}, "
                           f"expected {digest}")


def _gzip_layer(rootfs_tar: Path, out: Path) -> tuple[str, str, int]:
    """Gzip the tar to out in one streaming pass: (diff_id, digest, compressed size)."""
    diff = hashlib.sha256()
    with (rootfs_tar.open("rb") as src, out.open("wb") as raw,
          gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz):
        while chunk := src.read(_CHUNK):
            diff.update(chunk)
            gz.write(chunk)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{diff.hexdigest()}", f"sha256:{digest.hexdigest()}", out.stat().st_size


def push_image(registry: Registry, repo: str, tag: str, rootfs_tar: Path, config: dict,
               created: str | None = None) -> str:
    """Push rootfs_tar as a one-layer OCI image repo:tag; returns the manifest digest."""
    rootfs_tar = Path(rootfs_tar)
    created = created or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="push-", dir=registry.dir) as tmp:
        layer = Path(tmp) / "layer.tar.gz"
        diff_id, layer_digest, layer_size = _gzip_layer(rootfs_tar, layer)
        with layer.open("rb") as f:
            _upload_blob(registry, repo, layer_digest, layer_size, f)

    image_config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created,
                     "created_by": f"tests/integration/registry.py: {rootfs_tar.name}"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    _upload_blob(registry, repo, config_digest, len(config_bytes), config_bytes)

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest,
                    "size": layer_size}],
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    resp, _ = _request(registry, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest_bytes,
                       headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
    answered = resp.getheader("Docker-Content-Digest")
    if answered != manifest_digest:
        raise RuntimeError(f"registry says the manifest is {answered}, we computed "
                           f"{manifest_digest}")
    return answered


# --- the Saleor stand-in image -------------------------------------------------------------

SALEOR_CMD = ["uvicorn", "saleor.asgi:application", "--host=0.0.0.0", "--port=8000",
              "--workers=2", "--lifespan=auto", "--ws=none", "--no-server-header",
              "--no-access-log", "--timeout-keep-alive=35", "--timeout-graceful-shutdown=30",
              "--limit-max-requests=10000"]  # saleor/saleor Dockerfile, verbatim
STANDIN_PACKAGES = ["python3", "python3-venv", "libmagic1t64", "libpq5", "media-types"]


def saleor_standin_config(version: str) -> dict:
    """The OCI image config (`config` member) of the stand-in, after Saleor's Dockerfile."""
    return {
        "Env": ["PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "PYTHONUNBUFFERED=1",
                "PYTHONPATH=/app",
                "STATIC_URL=/static/"],
        "WorkingDir": "/app",
        "Cmd": list(SALEOR_CMD),
        "ExposedPorts": {"8000/tcp": {}},
        "Labels": {
            "org.opencontainers.image.title": "saleor-standin",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description":
                "Test stand-in for ghcr.io/saleor/saleor (builder tests); not Saleor.",
            "builder.stand_in": "true",
        },
    }


def build_saleor_standin_rootfs(bundle_tar: Path, out_tar: Path, suite: str = "trixie") -> Path:
    """The stand-in's root filesystem as a tar, built by mmdebstrap from a Saleor bundle."""
    bundle_tar, out_tar = Path(bundle_tar).resolve(), Path(out_tar).resolve()
    out_tar.parent.mkdir(parents=True, exist_ok=True)
    b = shlex.quote(str(bundle_tar))
    # Commands in the chroot get a clean environment: nothing of the host's (PIP_*, proxies,
    # locale) may leak into the image's build.
    run = 'chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8'
    hooks = [
        # the bundle, unpacked inside the rootfs so that the chroot's pip can read its wheels
        'mkdir -p "$1/tmp/saleor-bundle" && tar -xzf ' + b
        + ' -C "$1/tmp/saleor-bundle" --strip-components=1 --no-same-owner',
        'mkdir -p "$1/app" && cp -a "$1/tmp/saleor-bundle/app/." "$1/app/"',
        f'{run} python3 -m venv /app/.venv',
        f'{run} /app/.venv/bin/pip install --no-index --no-cache-dir'
        ' --disable-pip-version-check --find-links /tmp/saleor-bundle/wheels'
        ' -r /tmp/saleor-bundle/requirements.txt',
        f'{run} SECRET_KEY=collectstatic-only STATIC_URL=/static/ sh -c'
        ' "cd /app && exec /app/.venv/bin/python3 manage.py collectstatic --no-input"',
        'test -n "$(ls -A "$1/app/static")"',
        'mkdir -p "$1/app/media" "$1/app/static"',
        f'{run} groupadd -r saleor && {run} useradd -r -g saleor saleor',
        f'{run} chown -R saleor:saleor /app/media /app/static',
        'rm -rf "$1/tmp/saleor-bundle" "$1/root/.cache"',
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    ]
    cmd = ["mmdebstrap", "--mode=root", "--format=tar", "--variant=minbase",
           "--include=" + ",".join(STANDIN_PACKAGES),
           '--aptopt=Acquire::Retries "3"',
           "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           # device nodes do not belong in an image layer (the runtime makes /dev)
           "--skip=output/dev",
           *(f"--customize-hook={hook}" for hook in hooks),
           suite, str(out_tar)]
    started = time.monotonic()
    log = out_tar.with_suffix(".log")
    with log.open("wb") as f:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                              check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"mmdebstrap failed ({proc.returncode}); log {log}:\n{tail}")
    # An empty /dev, as image layers have it (--skip=output/dev dropped the directory too).
    with tarfile.open(out_tar, "a", format=tarfile.PAX_FORMAT) as tar:
        if not any(m.name in ("./dev", "dev") for m in tar.getmembers()):
            info = tarfile.TarInfo("./dev")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    print(f"saleor stand-in rootfs: {out_tar} ({out_tar.stat().st_size / 1e6:.0f} MB) in "
          f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    return out_tar


__all__ = ["BINARY", "Registry", "build_saleor_standin_rootfs", "make_tls", "push_image",
           "saleor_standin_config"]
