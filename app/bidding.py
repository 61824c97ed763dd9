"""Asking pass-through targets for live bids, all at once, within the ping's deadline.

Each web worker process runs one event loop in a thread of its own, with one
HTTP client (its connections kept alive between pings); a ping hands it the
targets to ask and waits for the answers. Each buyer has its own timeout and
the ping a deadline: a task still running then is cancelled, so a slow or
hostile buyer costs that ping at most its deadline and never a worker.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import httpx

from app import bid_answers, bid_templates
from app.bid_answers import Answer
from app.bid_templates import PingFacts

MAX_ANSWER = 64 * 1024


class TooLarge(Exception):
    pass


class Bidder:
    """One per worker process: gunicorn forks before the first ping, and the loop starts then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                self._loop, self._client = asyncio.new_event_loop(), None
                threading.Thread(target=self._loop.run_forever, name="bidder", daemon=True).start()
                self._pid = os.getpid()
            return self._loop

    def ask(self, targets: list[Any], facts: PingFacts, seconds: float) -> list[Answer]:
        """Every target's answer, in their order, within `seconds` (and a little more)."""
        if not targets:
            return []
        running = asyncio.run_coroutine_threadsafe(
            self._ask_all(targets, facts, max(seconds, 0.0)), self._running())
        return running.result(timeout=max(seconds, 0.0) + 1)

    async def _ask_all(self, targets, facts, seconds) -> list[Answer]:
        if self._client is None:
            # Redirects are not followed, and no proxy from the environment is used.
            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=None,
                # Unencoded answers: 64 KiB read is 64 KiB parsed, never a zip bomb.
                headers={"Accept-Encoding": "identity"},
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._ask_one(t, facts)) for t in targets]
        done, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        ms = _ms(started)
        return [task.result() if task in done
                else Answer(target.id, "timeout", ms, "ping_deadline")
                for target, task in zip(targets, tasks)]

    async def _ask_one(self, target, facts: PingFacts) -> Answer:
        started, answered = time.perf_counter(), []
        try:
            request = _request(target, facts)
        except ValueError:
            return Answer(target.id, "error", _ms(started), "bad_url")
        try:
            async with asyncio.timeout(target.bid_timeout_ms / 1000):
                status, body = await self._fetch(request, answered)
        except TimeoutError:
            return Answer(target.id, "timeout", _ms(started), "slow_body" if answered else None)
        except TooLarge:
            return Answer(target.id, "error", _ms(started), "too_large")
        except httpx.HTTPError:
            return Answer(target.id, "error", _ms(started), "unreachable")
        if 300 <= status < 400:
            return Answer(target.id, "error", _ms(started), "redirect")
        return bid_answers.read(target.id, status, body, _ms(started), target.bid_fields,
                                target.max_bid)

    async def _fetch(self, request: httpx.Request, answered: list) -> tuple[int, bytes]:
        response = await self._client.send(request, stream=True)
        try:
            answered.append(response.status_code)
            if int(response.headers.get("content-length") or 0) > MAX_ANSWER:
                raise TooLarge
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise TooLarge
            return response.status_code, bytes(body)
        finally:
            await response.aclose()


def _request(target, facts: PingFacts) -> httpx.Request:
    url = bid_templates.fill_url(target.bid_url, facts)
    bid_templates.check_url(url)
    headers = dict(bid_templates.check_header(h) for h in target.bid_headers or [])
    if target.bid_method == "GET":
        return httpx.Request("GET", url, headers=headers)
    body = (bid_templates.fill_body(target.bid_body, facts) if target.bid_body
            else facts.default_body())
    headers.setdefault("Content-Type", "application/json")
    return httpx.Request("POST", url, headers=headers, content=body.encode())


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
