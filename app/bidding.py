"""Asking pass-through targets for live bids, all at once, within the ping's deadline.

The request thread asks every buyer itself, through libcurl's multi
interface (pycurl): the transfers run in C, the thread waits in select()
without the GIL, and each thread keeps its buyers' connections alive
between pings. Measured against urllib3 in a pool of bidder threads and
httpx's asyncio client (docs/performance.md): threads handing the GIL to
each other were most of what a pass-through ping cost beyond a static one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pycurl

from app import bid_answers, bid_templates
from app.bid_answers import Answer
from app.bid_templates import PingFacts

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
IDLE = 0.002
TOO_LARGE = {pycurl.E_WRITE_ERROR, pycurl.E_FILESIZE_EXCEEDED}
TIMED_OUT = {pycurl.E_OPERATION_TIMEDOUT}
BAD_URL = {pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL}


class _Asking:
    """One buyer being asked: its transfer, its budget and what it sent back."""

    def __init__(self, target, request: dict, budget: float, cut_short: bool) -> None:
        self.target, self.cut_short, self.body = target, cut_short, bytearray()
        self.curl = curl = pycurl.Curl()
        curl.setopt(pycurl.URL, request["url"])
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in request["headers"].items()])
        if request["method"] == "POST":
            curl.setopt(pycurl.POSTFIELDS, request["body"])
        # http(s) only, no redirect followed, no answer decoded, no signal
        # (threads), and the whole transfer within the buyer's budget.
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.MAXFILESIZE, MAX_ANSWER)
        ms = max(int(budget * 1000), 1)
        curl.setopt(pycurl.TIMEOUT_MS, ms)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, ms)
        curl.setopt(pycurl.WRITEFUNCTION, self._write)

    def _write(self, chunk: bytes) -> int | None:
        self.body += chunk
        # A count other than the chunk's length aborts the transfer: an answer
        # without a Content-Length is cut at 64 KiB too.
        return 0 if len(self.body) > MAX_ANSWER else None

    def answered(self, ms: float) -> Answer:
        target, status = self.target, self.curl.getinfo(pycurl.RESPONSE_CODE)
        if 300 <= status < 400:
            return Answer(target.id, "error", ms, "redirect")
        try:
            return bid_answers.read(target.id, status, bytes(self.body), ms, target.bid_fields,
                                    target.max_bid, target.gateway_id is not None)
        except Exception:
            # Whatever one buyer's answer did, it costs that buyer alone.
            log.exception("reading target %s's answer failed", target.id)
            return Answer(target.id, "error", ms, "failed")

    def failed(self, code: int, ms: float) -> Answer:
        target = self.target
        if code in TOO_LARGE:
            return Answer(target.id, "error", ms, "too_large")
        if code in TIMED_OUT:
            # Headers came and the body did not within the budget: a slow drip.
            started = self.curl.getinfo(pycurl.RESPONSE_CODE) != 0
            reason = "ping_deadline" if self.cut_short else "slow_body" if started else None
            return Answer(target.id, "timeout", ms, reason)
        if code in BAD_URL:
            return Answer(target.id, "error", ms, "bad_url")
        return Answer(target.id, "error", ms, "unreachable")


class Bidder:
    """One per web worker process; each request thread asks through its own
    libcurl multi handle, which keeps connections to buyers between pings."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _multi(self) -> pycurl.CurlMulti:
        multi = getattr(self._local, "multi", None)
        if multi is None:
            multi = self._local.multi = pycurl.CurlMulti()
        return multi

    def ask(self, targets: list[Any], facts: PingFacts, seconds: float) -> list[Answer]:
        """Every target's answer, in their order, within `seconds`."""
        if not targets:
            return []
        started, seconds = time.perf_counter(), max(seconds, 0.0)
        answers: dict[int, Answer] = {}
        asking: dict[pycurl.Curl, tuple[int, _Asking]] = {}
        multi = self._multi()
        try:
            for n, target in enumerate(targets):
                own = target.bid_timeout_ms / 1000
                try:
                    one = _Asking(target, _request(target, facts), min(own, seconds),
                                  seconds < own)
                except ValueError:
                    answers[n] = Answer(target.id, "error", _ms(started), "bad_url")
                    continue
                multi.add_handle(one.curl)
                asking[one.curl] = (n, one)
            _run(multi, asking, answers, started, started + seconds)
        finally:
            for curl, (n, one) in asking.items():
                multi.remove_handle(curl)
                curl.close()
                answers.setdefault(n, Answer(one.target.id, "timeout", _ms(started),
                                             "ping_deadline"))
        return [answers[n] for n in range(len(targets))]


def _run(multi: pycurl.CurlMulti, asking: dict, answers: dict[int, Answer], started: float,
         deadline: float) -> None:
    """Drive the transfers until each has ended or the deadline has come."""
    waiting = len(asking)
    while waiting:
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, failed = multi.info_read()
            for curl in ok:
                n, one = asking[curl]
                answers[n] = one.answered(_ms(started))
            for curl, code, _message in failed:
                n, one = asking[curl]
                answers[n] = one.failed(code, _ms(started))
            waiting -= len(ok) + len(failed)
            if not queued:
                break
        left = deadline - time.perf_counter()
        if not waiting or left <= 0:
            return
        # Until a socket is ready, libcurl's next timeout or the deadline: each
        # transfer has a timeout of its own, so libcurl always names one.
        wanted = multi.timeout()
        wait = min(left, wanted / 1000) if wanted >= 0 else left
        if any(multi.fdset()):
            multi.select(wait)
        else:
            # No socket yet (a name being resolved): select() would not wait.
            time.sleep(min(wait, IDLE))


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
