"""The soak's clients, each a thread: publishers pinging (and some confirming)
over HTTP, callers dialling the fresh reservations with SIPp, and a sampler
of every target's usage against its caps. `stack` is a PrivateStack or a
LoopbackCluster (tests/loopback_cluster.py), whose ping, confirm and edge
pick any of its nodes."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from tests.private_stack import PrivateStack
from tests.sip import dial

CONFIRMED_SHARE = 0.3
REDIAL_SHARE = 0.1
HOLD_MS = 1000
USAGE = ("SELECT t.id, u.live > IFNULL(t.concurrency_cap, u.live) "
         "OR u.this_hour > IFNULL(t.hourly_cap, u.this_hour) "
         "OR u.today > IFNULL(t.daily_cap, u.today) "
         "OR u.this_month > IFNULL(t.monthly_cap, u.this_month) "
         "FROM targets t JOIN target_usage u ON u.target_id = t.id")


@dataclass
class Record:
    """What the clients saw, shared by the threads under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pings: int = 0
    confirms: int = 0
    errors_5xx: list[str] = field(default_factory=list)
    # Statuses that do not count as errors (a cluster's 503 while its writer
    # changes), and how many such answers came.
    tolerated: frozenset[int] = frozenset()
    tolerated_answers: int = 0
    reserved: set[str] = field(default_factory=set)
    fresh: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    dials: int = 0
    completed: list[str] = field(default_factory=list)
    over_cap: set[int] = field(default_factory=set)


class Client(threading.Thread):
    def __init__(self, stack: PrivateStack, record: Record, halt: threading.Event):
        super().__init__(daemon=True)
        self.stack, self.record, self.halt = stack, record, halt

    def run(self):
        while not self.halt.is_set():
            self.step()

    def step(self) -> None:
        raise NotImplementedError


class Publisher(Client):
    """Pings for random callers about 8 times a second; confirms some recent reservations."""

    def __init__(self, stack, record, halt, key: str):
        super().__init__(stack, record, halt)
        self.key = key

    def step(self) -> None:
        caller = f"+1202555{random.randrange(10000):04d}"
        status, body = self.answer(self.stack.ping, self.key, caller_number=caller)
        uuid = body.get("rtb", {}).get("uuid") if status == 200 else None
        with self.record.lock:
            self.record.pings += 1
            if uuid:
                self.record.reserved.add(uuid)
                self.record.fresh.append(uuid)
        if uuid and random.random() < CONFIRMED_SHARE:
            # Any recent one, not only this one: confirms made after their
            # buyer filled up must be refused, not overbook it.
            with self.record.lock:
                uuid = random.choice(self.record.fresh)
                self.record.confirms += 1
            self.answer(self.stack.confirm, self.key, uuid)
        self.halt.wait(0.12)

    def answer(self, send, *args, **params) -> tuple[int, dict]:
        """An HTTP answer; a 5xx or no answer at all is an error."""
        try:
            status, body = send(*args, **params)
        except OSError as error:
            status, body = 599, {"error": {"code": repr(error)}}
        with self.record.lock:
            if status in self.record.tolerated:
                self.record.tolerated_answers += 1
            elif status >= 500:
                self.record.errors_5xx.append(f"{status} {body.get('error')}")
        return status, body


class Caller(Client):
    """Dials a recent reservation, holds 1 s and hangs up; now and then dials
    one whose call already completed, which must be refused."""

    def __init__(self, stack, record, halt, workdir: Path, source_ip: str):
        super().__init__(stack, record, halt)
        self.workdir, self.source_ip = workdir, source_ip
        workdir.mkdir(parents=True, exist_ok=True)

    def step(self) -> None:
        with self.record.lock:
            used = self.record.completed
            if used and random.random() < REDIAL_SHARE:
                uuid = random.choice(used)
            else:
                uuid = random.choice(self.record.fresh) if self.record.fresh else None
                if uuid:
                    self.record.fresh.remove(uuid)
        if uuid is None:
            self.halt.wait(0.2)
            return
        call = dial(self.workdir, self.stack.edge, uuid, source_ip=self.source_ip, hold_ms=HOLD_MS)
        with self.record.lock:
            self.record.dials += 1
            if call.returncode == 0:
                self.record.completed.append(uuid)


class Sampler(Client):
    """Reads every target's usage four times a second; notes any over a cap."""

    def step(self) -> None:
        try:
            over = {target for target, exceeded in self.stack.rows(USAGE) if exceeded}
        except DBAPIError:
            # A cluster's writer changing: the next sample reads the next one.
            self.halt.wait(0.25)
            return
        with self.record.lock:
            self.record.over_cap |= over
        self.halt.wait(0.25)
