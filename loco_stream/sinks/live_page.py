"""A live page: the events of every stream as they happen, with their snapshots and clips.

    GET /                 the page (plain HTML and JavaScript, no build step)
    GET /events           Server-Sent Events: the records kept (the last HISTORY), then each new
                          one, as ``{"stream": NAME, "record": {...}}``
    GET /records          the records kept, as one JSON list
    GET /evidence/PATH    a snapshot (.jpg) or clip (.mp4) under the evidence folder

Served by the standard library's threaded HTTP server on one thread of its own (and one per
connection). Only 127.0.0.1 unless ``allow_remote``: the page has no password.
"""

from __future__ import annotations

import contextlib
import errno
import json
import queue
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

from ..defaults import LIVE_PAGE_ADDRESS
from .base import Sink, SinkError, is_loopback, log, split_address

DEFAULT_ADDRESS = LIVE_PAGE_ADDRESS
HISTORY = 1000  # records a new page gets first
CLIENT_QUEUE = 1000  # records waiting for one slow page: beyond that it is disconnected
KEEPALIVE_S = 15.0  # an SSE comment this often keeps idle connections open
CONTENT_TYPES = {".jpg": "image/jpeg", ".mp4": "video/mp4"}


class LivePage(Sink):
    """Serves the live page on ``address`` (``HOST:PORT``; port 0: any free one), the evidence
    files from ``evidence_folder``."""

    name = "page"

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        allow_remote: bool = False,
        evidence_folder: str | Path | None = None,
    ) -> None:
        self.host, self.port = split_address(address, 8080, "--serve")
        self.remote = not is_loopback(self.host)
        if self.remote and not allow_remote:
            raise ValueError(
                f"--serve {address}: '{self.host}' is not a loopback address, and the page has no "
                "password: anyone who reaches it sees the events and the evidence; add "
                "--serve-remote to allow that, or serve on 127.0.0.1"
            )
        self.evidence_folder = None if evidence_folder is None else Path(evidence_folder)
        self._history: deque[str] = deque(maxlen=HISTORY)
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._served = 0  # records sent to pages

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def open(self) -> None:
        try:
            server = ThreadingHTTPServer((self.host, self.port), _Handler)
        except OSError as error:
            where = f"{self.host}:{self.port}"
            if error.errno == errno.EADDRINUSE:
                raise SinkError(
                    f"--serve {where}: the port is in use; give another port "
                    f"(e.g. --serve {self.host}:{self.port + 1}) or stop what listens there"
                ) from None
            raise SinkError(
                f"--serve {where}: cannot listen there ({error.strerror or error}); give an "
                "address of this machine, e.g. 127.0.0.1:8080"
            ) from None
        server.daemon_threads = True
        server.page = self
        self._server = server
        self.port = server.server_address[1]
        if self.remote:
            log.warning(
                f"page: {self.url} is served to the network: anyone who can reach it sees the "
                "events and the evidence (there is no password)"
            )
        threading.Thread(target=server.serve_forever, name="loco-page", daemon=True).start()

    def publish(self, stream: str, record: dict) -> None:
        message = json.dumps({"stream": stream, "record": record})
        with self._lock:
            self._history.append(message)
            for client in list(self._clients):
                try:
                    client.queue.put_nowait(message)
                except queue.Full:  # a page that does not keep up: it reconnects and catches up
                    self._drop(client)

    def counters(self) -> dict:
        with self._lock:
            return {"pages": len(self._clients), "records_sent": self._served}

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            for client in list(self._clients):
                self._drop(client)
        server.shutdown()
        server.server_close()

    def subscribe(self) -> tuple[_Client, list[str]]:
        """A new page's queue and the records kept so far."""
        client = _Client()
        with self._lock:
            self._clients.add(client)
            return client, list(self._history)

    def _drop(self, client: _Client) -> None:
        """End a page's connection (the lock is held)."""
        client.dropped = True
        self._clients.discard(client)
        # wakes its handler; with its queue full, the handler sees ``dropped`` before it waits
        with contextlib.suppress(queue.Full):
            client.queue.put_nowait(None)

    def unsubscribe(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)

    def history(self) -> list[str]:
        with self._lock:
            return list(self._history)

    def count_sent(self) -> None:
        with self._lock:
            self._served += 1

    def evidence_file(self, relative: str) -> Path | None:
        """The evidence file at ``relative`` under the folder, if it is one (never outside)."""
        if self.evidence_folder is None:
            return None
        folder = self.evidence_folder.resolve()
        path = (folder / relative).resolve()
        if path.suffix not in CONTENT_TYPES or not path.is_relative_to(folder):
            return None
        return path if path.is_file() else None


class _Client:
    """One connected page: the records waiting for it."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(CLIENT_QUEUE)
        self.dropped = False  # the server closes, or the page fell behind


class _Handler(BaseHTTPRequestHandler):
    server_version = "loco-stream"
    protocol_version = "HTTP/1.1"

    @property
    def page(self) -> LivePage:
        return self.server.page

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = files("loco_stream.sinks").joinpath("page.html").read_bytes()
            self._send(200, "text/html; charset=utf-8", body)
        elif path == "/records":
            body = ("[" + ",".join(self.page.history()) + "]").encode()
            self._send(200, "application/json", body)
        elif path == "/events":
            self._stream_events()
        elif path.startswith("/evidence/"):
            found = self.page.evidence_file(path[len("/evidence/") :])
            if found is None:
                self._send(404, "text/plain", b"no such evidence file\n")
            else:
                self._send(200, CONTENT_TYPES[found.suffix], found.read_bytes())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _stream_events(self) -> None:
        client, history = self.page.subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for message in history:
                self._event(message)
            while not client.dropped:
                try:
                    message = client.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                if message is not None:
                    self._event(message)
        except OSError:  # the page went away
            return
        finally:
            self.page.unsubscribe(client)

    def _event(self, message: str) -> None:
        self.wfile.write(f"data: {message}\n\n".encode())
        self.wfile.flush()
        self.page.count_sent()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Requests are not logged (the terminal carries the events)."""
