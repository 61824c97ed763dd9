"""Buyers that bid over HTTP, on one loopback port, each path its own behaviour:
answer after a delay, answer garbage, a huge or slow-dripping body, a
redirect, or never. The tests use them; the bench's pass-through step has lighter ones
(tests/bench/buyers.py).

One asyncio loop in a thread serves them all, keep-alive included, so
hundreds of buyers waiting out their delay cost no thread each.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Behaviour:
    delay: float = 0.0
    status: int = 200
    # A dict is sent as JSON; bytes as they are.
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds between the body's bytes; None sends it at once.
    drip: float | None = None
    # Sent in chunks, without a Content-Length to go by.
    chunked: bool = False
    never: bool = False


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class HttpBuyers:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.received: list[Received] = []
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    def add(self, name: str, **behaviour: Any) -> str:
        """A buyer at /name; its URL."""
        self.behaviours[name] = Behaviour(**behaviour)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def to(self, name: str) -> list[Received]:
        return [r for r in self.received if r.target.split("?")[0] == f"/{name}"]

    def stop(self) -> None:
        async def close():
            # Connections cancelled before they ran would each log their cancellation.
            self._loop.set_exception_handler(lambda loop, context: None)
            self._server.close()
            serving = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await _read(reader):
                self.received.append(request)
                name = request.target.split("?")[0].lstrip("/")
                behaviour = self.behaviours.get(name, Behaviour(status=404))
                if behaviour.never:
                    # Until the asker hangs up: a buyer that never answers holds nothing after.
                    await reader.read()
                    return
                await self._answer(writer, behaviour)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # Stopping cancels the connections that wait: they end quietly.
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        await asyncio.sleep(b.delay)
        body = b.body if isinstance(b.body, bytes) else json.dumps(b.body).encode()
        length = {"Transfer-Encoding": "chunked"} if b.chunked else {"Content-Length": str(len(body))}
        head = {**length, "Content-Type": "application/json", **b.headers}
        writer.write(f"HTTP/1.1 {b.status} X\r\n".encode()
                     + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n")
        if b.chunked:
            for i in range(0, len(body), 4096):
                writer.write(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096]))
            writer.write(b"0\r\n\r\n")
        elif b.drip is None:
            writer.write(body)
        else:
            for i in range(len(body)):
                writer.write(body[i:i + 1])
                await writer.drain()
                await asyncio.sleep(b.drip)
        await writer.drain()


async def _read(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return Received(method, target, headers, body)
