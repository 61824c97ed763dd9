"""What the fault tests, the soak and the cluster tests do with an instance of
their own, however many nodes it has: call its HTTP API as a publisher does,
read its database and build markets in it, ping it steadily (Pinger)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.market import Market, make_market


class PublisherApi:
    """The HTTP API at self.url, over HTTP as publishers send to it."""

    url: str
    # Seconds before a request that has no answer raises.
    timeout: float = 20

    def request(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        """One HTTP request; (status, JSON body). Timeouts and resets raise."""
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{path}?{query}", data=b"", method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def ping(self, key: str, **params) -> tuple[int, dict]:
        return self.request("POST", "/rtbs.json", {"key": key, **params})

    def confirm(self, key: str, uuid: str) -> tuple[int, dict]:
        return self.request("PUT", f"/rtbs/{uuid}.json", {"key": key, "status": "confirmed"})


class DatabaseAccess:
    """Rows and markets through self.sessions, the app's own sessionmaker."""

    sessions: sessionmaker[Session] | None

    def rows(self, sql: str, **params) -> list:
        with self.sessions() as db:
            return db.execute(text(sql), params).all()

    def market(self, targets: list[dict], **key_settings) -> Market:
        """tests.market.make_market on this instance's database."""
        return make_market(self.sessions, targets, **key_settings)


class Pinger(threading.Thread):
    """Pings one key over HTTP until stopped; keeps every answer, or the error instead."""

    def __init__(self, stack: PublisherApi, key: str):
        super().__init__(daemon=True)
        self.stack, self.key = stack, key
        self.answers: list[tuple[int, dict] | Exception] = []
        # When each answer came (time.monotonic()), in the same order.
        self.moments: list[float] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                answer = self.stack.ping(self.key)
            except OSError as error:
                answer = error
            self.moments.append(time.monotonic())
            self.answers.append(answer)
            self.halt.wait(0.1)

    def stop(self) -> list[tuple[int, dict] | Exception]:
        self.halt.set()
        self.join(60)
        return self.answers

    def reserved(self) -> list[str]:
        return [a[1]["rtb"]["uuid"] for a in list(self.answers)
                if isinstance(a, tuple) and a[0] == 200 and "uuid" in a[1]["rtb"]]

    def codes(self) -> set[str]:
        return {a[1].get("error", {}).get("code", "") if isinstance(a, tuple) else repr(a)
                for a in list(self.answers)}
