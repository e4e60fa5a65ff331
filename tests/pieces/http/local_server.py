"""A real HTTP(S) test server on 127.0.0.1 for `http.request` tests. Main entry: `serve`.

Routes (any method):
- `/echo`: answers JSON `{method, path, query, headers, body}` describing the request.
- `/status/<code>`: answers `<code>`; `?retry_after=V` adds `Retry-After: V`, `?json=1` a JSON body.
- `/redirect?to=URL&code=302`: answers a redirect to `URL`.
- `/json`, `/text` (ISO-8859-1), `/bad-json` (claims JSON, is not), `/empty` (204).
- `/bytes?n=N[&unsized=1]`: N bytes, with Content-Length or close-delimited.
- `/gzip?n=N`: N zero bytes, gzip-compressed on the wire.
- `/slow?seconds=S`: waits before answering; `/drip?chunks=C&interval=S`: a body sent slowly.
Every request is recorded in `LocalServer.requests`.

For failures below HTTP: `serve_raw` answers every connection with fixed bytes (or a reset), and
`hanging_port` is a port whose connections never complete.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class LocalServer:
    """A running server: where it listens and what it has received."""

    scheme: str
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """An absolute URL on this server (`host` lets a test use a name its resolver maps)."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [r["path"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        self.server.state.requests.append(record)
        name = parts.path.strip("/").split("/")[0].replace("-", "_")
        route = getattr(self, f"route_{name}", None)
        if route is None:
            self._send(404, b"no such route", "text/plain")
        else:
            route(parts.path, query, record)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route_echo(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        self._send(200, json.dumps(record).encode(), "application/json", {"X-Multi": "a"})

    def route_status(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        code = int(path.rsplit("/", 1)[1])
        headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
        if "json" in query:
            self._send(code, json.dumps({"code": code}).encode(), "application/json", headers)
        else:
            self._send(code, f"status {code}".encode(), "text/plain", headers)

    def route_redirect(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        code = int(query.get("code", "302"))
        self._send(code, b"", "text/plain", {"Location": query["to"]})

    def route_json(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        self._send(200, b'{"items": [1, 2], "ok": true}', "application/vnd.api+json")

    def route_text(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        self._send(200, "caf\xe9".encode("latin-1"), "text/plain; charset=ISO-8859-1")

    def route_bad_json(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        self._send(200, b"{not json", "application/json")

    def route_empty(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        self.send_response(204)
        self.end_headers()

    def route_bytes(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        size = int(query["n"])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if "unsized" in query:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        chunk = b"a" * 65536
        with _ignore_disconnect():
            for start in range(0, size, len(chunk)):
                self.wfile.write(chunk[: min(len(chunk), size - start)])

    def route_gzip(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        body = gzip.compress(b"\0" * int(query["n"]))
        self._send(200, body, "application/octet-stream", {"Content-Encoding": "gzip"})

    def route_slow(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        time.sleep(float(query["seconds"]))
        with _ignore_disconnect():
            self._send(200, b"late", "text/plain")

    def route_drip(self, path: str, query: dict[str, str], record: dict[str, Any]) -> None:
        chunks = int(query["chunks"])
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(chunks))
        self.end_headers()
        with _ignore_disconnect():
            for _ in range(chunks):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(float(query["interval"]))


@contextmanager
def _ignore_disconnect() -> Iterator[None]:
    with suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
        yield


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LocalServer


@contextmanager
def serve(ssl_context: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    """Run the test server on 127.0.0.1 (a free port) in a thread; https when given a context."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    httpd.state = LocalServer("https" if ssl_context else "http", httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_raw(reply: bytes, *, reset: bool = False) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that reads a request, sends `reply` and closes; yields its port.

    With `reset`, the connection is closed with a TCP reset (RST) instead of an orderly close.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn, suppress(OSError):
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(reply)
                if reset:  # SO_LINGER with a zero time-out: close() sends RST
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@contextmanager
def hanging_port() -> Iterator[int]:
    """A port on 127.0.0.1 where connecting hangs: its accept queue is full and never served.

    Linux drops the handshake of a connection that does not fit the queue, so the client keeps
    waiting (as for a host that does not answer) instead of being refused.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(3):  # the first fills the queue, the others wait behind it
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
