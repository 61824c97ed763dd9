"""The bench's wrk script against a loopback server that notes when each ping
came: the ramp spreads the connections' first pings (tests/bench/pings.py)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.bench import pings

CONNECTIONS, RAMP_MS, SECONDS = 8, 2000, 3


class _Noted(BaseHTTPRequestHandler):
    """Keeps each connection, so a connection's first ping is the first from its address."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.came.setdefault(self.client_address, time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    # All connections at once: the default backlog of 5 drops connects, which
    # come back a second later.
    request_queue_size = 64
    daemon_threads = True


def first_pings(tmp_path, ramp_ms: int) -> list[float]:
    """When each connection's first ping of a short wrk run came, in ms after the first."""
    server = _Server(("127.0.0.1", 0), _Noted)
    server.came = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = pings.write_script(tmp_path / "pings.lua", ["k"], ramp_ms, CONNECTIONS)
        pings.wrk(f"http://127.0.0.1:{server.server_port}", script, CONNECTIONS, SECONDS)
    finally:
        server.shutdown()
        server.server_close()
    first = sorted(server.came.values())
    assert len(first) == CONNECTIONS
    return [(moment - first[0]) * 1000 for moment in first]


def test_the_ramp_spreads_the_first_pings_over_its_milliseconds(tmp_path):
    # Eight draws from 0 to 2,000 ms all within 300 ms of each other: about
    # once in 70,000 runs.
    assert first_pings(tmp_path, RAMP_MS)[-1] > 300


def test_without_a_ramp_every_connection_pings_at_once(tmp_path):
    assert first_pings(tmp_path, 0)[-1] < 300
