"""A stand-in of EC2's instance metadata service on 127.0.0.1 (IMDS cannot run here), with
IMDSv2's rules as the EC2 User Guide gives them: PUT /latest/api/token with
X-aws-ec2-metadata-token-ttl-seconds between 1 and 21600 (else 400) returns a token; every
GET needs a token that has not expired (else 401: the instance requires IMDSv2); a path
the instance does not have is 404 (target-lifecycle-state outside an Auto Scaling group,
tags when the instance does not allow tags in its metadata)."""

from __future__ import annotations

import http.server
import itertools
import threading
import time

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TAGS = "tags/instance"


class IMDSStandIn:
    def __init__(self, metadata: dict[str, str], tags: dict[str, str] | None = None):
        self.metadata = dict(metadata)        # path under /latest/meta-data/ -> value
        self.tags = dict(tags) if tags is not None else None  # None: tags not allowed
        self.tokens: dict[str, float] = {}    # token -> when it expires
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: str = "") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self):  # noqa: N802
                self._send(*standin._token(self.path, self.headers.get(TTL_HEADER)))

            def do_GET(self):  # noqa: N802
                self._send(*standin._get(self.path, self.headers.get(TOKEN_HEADER)))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, path: str, value: str | None) -> None:
        with self.lock:
            if value is None:
                self.metadata.pop(path, None)
            else:
                self.metadata[path] = value

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _token(self, path: str, ttl: str | None) -> tuple[int, str]:
        with self.lock:
            self.requests.append(("PUT", path))
            if path != "/latest/api/token":
                return 404, ""
            if not (ttl or "").isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, ""
            token = f"token-{next(self.ids)}"
            self.tokens[token] = time.monotonic() + int(ttl)
            return 200, token

    def _get(self, path: str, token: str | None) -> tuple[int, str]:
        with self.lock:
            self.requests.append(("GET", path))
            if self.tokens.get(token or "", 0.0) <= time.monotonic():
                return 401, ""
            key = path.removeprefix("/latest/meta-data/")
            if self.tags is not None and key == TAGS:
                return 200, "\n".join(self.tags)
            if self.tags is not None and key.startswith(TAGS + "/"):
                value = self.tags.get(key.removeprefix(TAGS + "/"))
            else:
                value = self.metadata.get(key)
            return (404, "") if value is None else (200, value)
