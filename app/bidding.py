"""Asking pass-through targets for live bids, all at once, within the ping's deadline.

Each web worker process keeps a pool of threads that ask buyers, and one
urllib3 pool of connections kept alive between pings. A ping hands its
buyers to the threads and waits until they have answered or the deadline
has come: a buyer still out then is a timeout, and its thread gives up
within its own budget. Measured against httpx's asyncio client on a loop
of its own (tests/bench/passthrough.py): threads blocked in urllib3 kept
up with 4 buyers a ping where the event loop, starved of the GIL by the
request threads, did not.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, TimeoutError as Urllib3Timeout

from app import bid_answers, bid_templates
from app.bid_answers import Answer
from app.bid_templates import PingFacts

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
# Buyers asked at once by one worker process; each thread mostly waits on a socket.
ASKING_THREADS = 64


class TooLarge(Exception):
    pass


class TooSlow(Exception):
    pass


class Bidder:
    """One per worker process: gunicorn forks before the first ping, and the threads start then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._http: urllib3.PoolManager | None = None

    def _started(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pid != os.getpid():
                self._threads = ThreadPoolExecutor(ASKING_THREADS, thread_name_prefix="bidder")
                # Redirects are not followed, nor requests retried, nor answers decoded.
                self._http = urllib3.PoolManager(num_pools=256, maxsize=ASKING_THREADS,
                                                 retries=False)
                self._pid = os.getpid()
            return self._threads

    def ask(self, targets: list[Any], facts: PingFacts, seconds: float) -> list[Answer]:
        """Every target's answer, in their order, within `seconds`."""
        if not targets:
            return []
        threads, started, seconds = self._started(), time.perf_counter(), max(seconds, 0.0)
        asking = [threads.submit(self._ask_one, t, facts, started + seconds) for t in targets]
        done, _ = wait(asking, timeout=seconds)
        ms = _ms(started)
        answers = []
        for target, future in zip(targets, asking):
            if future in done and future.exception() is not None:
                # Whatever one buyer's answer did, it costs that buyer alone.
                log.error("asking target %s failed", target.id, exc_info=future.exception())
                answers.append(Answer(target.id, "error", ms, "failed"))
            elif future in done:
                answers.append(future.result())
            else:
                future.cancel()
                answers.append(Answer(target.id, "timeout", ms, "ping_deadline"))
        return answers

    def _ask_one(self, target, facts: PingFacts, deadline: float) -> Answer:
        started = time.perf_counter()
        own = target.bid_timeout_ms / 1000
        budget = min(own, deadline - started)
        cut_short = budget < own
        try:
            status, body = self._fetch(_request(target, facts), started + budget, max(budget, 0.001))
        except ValueError:
            return Answer(target.id, "error", _ms(started), "bad_url")
        except TooLarge:
            return Answer(target.id, "error", _ms(started), "too_large")
        except (Urllib3Timeout, TooSlow) as slow:
            reason = ("ping_deadline" if cut_short
                      else "slow_body" if isinstance(slow, TooSlow) else None)
            return Answer(target.id, "timeout", _ms(started), reason)
        except HTTPError:
            return Answer(target.id, "error", _ms(started), "unreachable")
        if 300 <= status < 400:
            return Answer(target.id, "error", _ms(started), "redirect")
        return bid_answers.read(target.id, status, body, _ms(started), target.bid_fields,
                                target.max_bid, target.gateway_id is not None)

    def _fetch(self, request: dict, ends: float, budget: float) -> tuple[int, bytes]:
        """The status and body; each socket wait is at most the budget, and the
        body is given up once the budget is spent (a slow drip) or 64 KiB passed."""
        response = self._http.request(**request, redirect=False, preload_content=False,
                                      decode_content=False,
                                      timeout=urllib3.Timeout(connect=budget, read=budget))
        complete = False
        try:
            if int(response.headers.get("content-length") or 0) > MAX_ANSWER:
                raise TooLarge
            body = bytearray()
            while chunk := response.read1(16384):
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise TooLarge
                if time.perf_counter() > ends:
                    raise TooSlow
            complete = True
            return response.status, bytes(body)
        finally:
            if not complete:
                # A connection given up mid-answer cannot carry the next request.
                response.close()
            response.release_conn()


def _request(target, facts: PingFacts) -> dict:
    url = bid_templates.fill_url(target.bid_url, facts)
    bid_templates.check_url(url)
    headers = {"Accept-Encoding": "identity",
               **dict(bid_templates.check_header(h) for h in target.bid_headers or [])}
    if target.bid_method == "GET":
        return {"method": "GET", "url": url, "headers": headers}
    body = (bid_templates.fill_body(target.bid_body, facts) if target.bid_body
            else facts.default_body())
    headers.setdefault("Content-Type", "application/json")
    return {"method": "POST", "url": url, "headers": headers, "body": body.encode()}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
