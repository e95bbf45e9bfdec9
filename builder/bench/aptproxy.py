"""A small caching HTTP proxy for apt, on 127.0.0.1, for the warm-bake benchmark; with an
upstream, a caching mirror of it (for the tests' bakes with `mirrors.apt` set).

apt-cacher-ng would be the usual choice, but it cannot bind in a sandbox whose only network
interface is loopback (its getaddrinfo uses AI_ADDRCONFIG), so the benchmark brings its own.
apt sends absolute URIs to a proxy; files are cached by URL, indexes included, which is what
makes a second bake of the same packages "warm".
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socketserver
import threading
import urllib.error
import urllib.request
from pathlib import Path

UPSTREAM_TIMEOUT = 60


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, fmt, *args) -> None:  # quiet: the bench prints its own table
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = self.path
        if self.server.upstream and url.startswith("/"):
            url = self.server.upstream + url
        if not url.startswith("http://"):
            self.send_error(400, "absolute http:// URI expected (this is a proxy)")
            return
        cached = self.server.cache / hashlib.sha256(url.encode()).hexdigest()
        if not cached.is_file():
            self.server.misses += 1
            try:
                with urllib.request.urlopen(url, timeout=UPSTREAM_TIMEOUT) as resp:
                    tmp = cached.with_suffix(".part")
                    with tmp.open("wb") as out:
                        shutil.copyfileobj(resp, out)
                    tmp.rename(cached)
            except urllib.error.HTTPError as exc:
                self.send_error(exc.code)
                return
            except OSError as exc:
                self.send_error(502, str(exc)[:200])
                return
        else:
            self.server.hits += 1
        size = cached.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        with cached.open("rb") as src:
            shutil.copyfileobj(src, self.wfile)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, cache: Path, upstream: str | None):
        self.cache = cache
        self.upstream = upstream.rstrip("/") if upstream else None
        self.hits = 0
        self.misses = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class AptProxy:
    """Started and always stopped by its user; `port` is on 127.0.0.1. With `upstream`
    (a URL), a path such as /debian/dists/... is fetched from upstream + path: a mirror."""

    def __init__(self, cache: Path, upstream: str | None = None):
        cache.mkdir(parents=True, exist_ok=True)
        self.server = _Server(cache, upstream)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AptProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
