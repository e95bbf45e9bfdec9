"""A tiny HTTP server on 127.0.0.1 that answers every request badly, for the paths where
the AWS endpoint misbehaves: "garbage" (200 with a body that is not XML), "html-500" (an
HTML error page, as a proxy or moto's own crash gives), "close" (reads the request and
drops the connection) or "silent" (reads it and never answers)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BadEndpoint:
    def __init__(self, mode: str):
        self.mode = mode
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                if server.mode == "close":
                    self.close_connection = True
                    return
                if server.mode == "silent":
                    time.sleep(5)
                    self.close_connection = True
                    return
                status, body = ((200, b"\x00not xml {at all") if server.mode == "garbage"
                                else (500, b"<!doctype html>\n<h1>Internal Server Error</h1>"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> str:
    """The URL of a 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
