"""A publisher's postback receiver for the tests: a real HTTP server on
loopback that keeps every request it gets, and the worker that posts to it,
started by the same code as `make run`."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.sip import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def query(self) -> dict[str, str]:
        return {name: values[0] for name, values in
                parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    @property
    def fields(self) -> dict:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-RTB-Signature", ""), expected)


class Receiver:
    """Answers each request with the next of `answers` ((status, headers)),
    then 200, after `delay` seconds. Down until start()."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]] | None = None,
                 delay: float = 0.0):
        self.port = free_port(kind=socket.SOCK_STREAM)
        self.url = f"http://127.0.0.1:{self.port}"
        self.answers = list(answers or [])
        self.delay = delay
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(self.command, self.path, dict(self.headers),
                                                  body))
                time.sleep(receiver.delay)
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of(self, uuid: str) -> list[Received]:
        """What it received about reservation uuid."""
        return [r for r in self.received if r.fields.get("uuid") == uuid]
