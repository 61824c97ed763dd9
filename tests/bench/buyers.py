"""The pass-through step's buyers: HTTP on one loopback port, each path a buyer
that answers its one JSON body after a set delay, or never.

tests/http_buyers.py plays every hostile buyer the tests need (slow drips,
garbage, redirects) on asyncio's streams; these only answer, on bare
protocol callbacks, on uvloop's event loop. They share the bench's two cores
with what it measures: in the pass-through step they cost 1.05 to 1.33 ms of
CPU a ping on asyncio's streams, 0.70 to 0.84 ms on protocol callbacks, and
0.45 to 0.50 ms on uvloop (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import threading

import uvloop


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, answers: dict[bytes, tuple[float, bytes]],
                 open_now: set[asyncio.Transport]):
        self.loop, self.answers, self.open_now, self.pending = loop, answers, open_now, b""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.open_now.add(transport)

    def connection_lost(self, _error: Exception | None) -> None:
        self.open_now.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while (end := self.pending.find(b"\r\n\r\n")) >= 0:
            request_line, *headers = self.pending[:end].split(b"\r\n")
            length = next((int(value) for name, _, value in (h.partition(b":") for h in headers)
                           if name.strip().lower() == b"content-length"), 0)
            if len(self.pending) < end + 4 + length:
                return
            self.pending = self.pending[end + 4 + length:]
            answer = self.answers.get(request_line.split(b" ")[1])
            # A buyer that never answers holds the connection until the asker hangs up.
            if answer is not None:
                self.loop.call_later(answer[0], self._send, answer[1])

    def _send(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)


class BenchBuyers:
    """Started at once, on a loop thread of its own; stop() ends them."""

    def __init__(self) -> None:
        self.answers: dict[bytes, tuple[float, bytes]] = {}
        self._open: set[asyncio.Transport] = set()
        self._loop = uvloop.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the bench's buyers did not start")

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(self._loop.create_server(
            lambda: _Connection(self._loop, self.answers, self._open), "127.0.0.1", 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    def add(self, name: str, delay: float = 0.0, body: dict | None = None,
            never: bool = False) -> str:
        """A buyer at /name, answering body after delay seconds (or never); its URL."""
        if not never:
            payload = json.dumps(body or {}).encode()
            self.answers[f"/{name}".encode()] = (delay, b"HTTP/1.1 200 OK\r\nContent-Type: "
                                                 b"application/json\r\nContent-Length: "
                                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        def close() -> None:
            self._server.close()
            for transport in list(self._open):
                transport.close()
            # The transports' closing callbacks run first.
            self._loop.call_soon(self._loop.stop)
        self._loop.call_soon_threadsafe(close)
        self._thread.join(10)
        self._loop.close()
