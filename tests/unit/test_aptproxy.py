"""builder.bench.aptproxy: a caching proxy for apt, and with an upstream a caching mirror,
against a real HTTP server on 127.0.0.1 standing in for Debian's."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.error
import urllib.request

import pytest

from builder.bench.aptproxy import AptProxy


@pytest.fixture
def upstream(tmp_path):
    root = tmp_path / "upstream"
    (root / "debian" / "dists").mkdir(parents=True)
    (root / "debian" / "dists" / "InRelease").write_text("signed index\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, proxy: str | None = None) -> bytes:
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    with urllib.request.build_opener(*handlers).open(url, timeout=10) as resp:
        return resp.read()


def test_mirror_mode_serves_upstream_paths_and_caches_them(upstream, tmp_path):
    url, root = upstream
    with AptProxy(tmp_path / "cache", upstream=url) as mirror:
        base = f"http://127.0.0.1:{mirror.port}"
        assert _get(f"{base}/debian/dists/InRelease") == b"signed index\n"
        (root / "debian" / "dists" / "InRelease").unlink()  # now only the cache has it
        assert _get(f"{base}/debian/dists/InRelease") == b"signed index\n"
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(f"{base}/debian/dists/Release")
        assert missing.value.code == 404
    assert (mirror.server.misses, mirror.server.hits) == (2, 1)


def test_proxy_mode_takes_absolute_uris_only(upstream, tmp_path):
    url, _ = upstream
    with AptProxy(tmp_path / "cache") as proxy:
        assert _get(f"{url}/debian/dists/InRelease", f"http://127.0.0.1:{proxy.port}") == \
            b"signed index\n"
        with pytest.raises(urllib.error.HTTPError) as relative:
            _get(f"http://127.0.0.1:{proxy.port}/debian/dists/InRelease")
        assert relative.value.code == 400
