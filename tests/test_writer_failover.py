"""One writer among several database nodes (app/writer.py), on two plain
private MariaDB servers (a plain server counts as synced: @@wsrep_on = 0).

Each holds the same market, so a ping can reserve on either; which server
holds the reservation tells which node the app wrote through. Pings run in
several threads through the app, as gunicorn's threads run them."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from app import create_app
from app.credentials import key_hash
from app.db import make_sessionmaker
from app.models import PostbackKey
from app.settings import Settings
from app.stack.mariadb import PrivateMariaDB
from tests.market import make_market
from tests.polling import eventually
from tests.sip import free_port

# A request that takes longer than this hangs (the bound).
HANG_SECONDS = 10


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    servers = [PrivateMariaDB(Settings.from_env({
        "RTB_VAR_DIR": str(tmp_path_factory.mktemp(f"node{n}")),
        "RTB_DB_PORT": str(free_port(kind=socket.SOCK_STREAM))})) for n in (1, 2)]
    started = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield servers
    finally:
        for server in started:
            if server.service.alive():
                os.kill(server.service.pid(), signal.SIGCONT)
            server.stop()


@pytest.fixture(scope="module")
def market(nodes):
    """The same market on both servers: made on each, the second given the first's key."""
    sessions = [make_sessionmaker(node.settings) for node in nodes]
    first, second = (make_market(s, rate_limit=100000) for s in sessions)
    assert (first.key_id, first.campaign_id) == (second.key_id, second.campaign_id)
    with sessions[1]() as db:
        db.execute(update(PostbackKey).where(PostbackKey.id == second.key_id)
                   .values(key_hash=key_hash(first.key), key_prefix=first.key[:8]))
        db.commit()
    yield first
    for s in sessions:
        s.kw["bind"].dispose()


@pytest.fixture(scope="module")
def app(nodes, market, tmp_path_factory):
    urls = ",".join(node.url("rtb").render_as_string(hide_password=False) for node in nodes)
    nowhere = free_port(kind=socket.SOCK_STREAM)
    settings = Settings.from_env({"RTB_VAR_DIR": str(tmp_path_factory.mktemp("app")),
                                  "RTB_DATABASE_URLS": urls,
                                  "RTB_EDGES": f"http://127.0.0.1:{nowhere}/RPC"})
    sessions = make_sessionmaker(settings)
    yield create_app(settings, sessions)
    sessions.kw["bind"].dispose()


_callers = itertools.count()


class Pinger:
    """Pings in a few threads until stopped; every answer kept with the node
    its reservation landed on."""

    def __init__(self, app, nodes, key: str, threads: int = 3):
        self.app, self.nodes, self.key = app, nodes, key
        self.answers: list[tuple[int, dict]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(threads)
        self._loops = [self._pool.submit(self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        client = self.app.test_client()
        with ThreadPoolExecutor(1) as one:
            while not self._stop.is_set():
                # A caller of its own each time: no ping is a duplicate of another.
                answer = one.submit(client.post, "/rtbs.json", query_string={
                    "key": self.key, "caller_number": f"202555{next(_callers) % 10000:04d}"})
                response = answer.result(timeout=HANG_SECONDS)
                self.answers.append((response.status_code, response.get_json()))

    def served(self) -> list[str]:
        return [body["rtb"]["uuid"] for status, body in list(self.answers) if status == 200]

    def stop(self) -> list[tuple[int, dict]]:
        self._stop.set()
        for loop in self._loops:
            loop.result(timeout=2 * HANG_SECONDS)
        self._pool.shutdown()
        return self.answers


def holds(node: PrivateMariaDB, uuid: str) -> bool:
    return node.root_sql(f"SELECT COUNT(*) FROM reservations WHERE uuid = '{uuid}'",
                         "rtb").strip() == "1"


def latest_on(pinger: Pinger, node: PrivateMariaDB) -> bool:
    """The latest reservation served is on this node (asked alone: the other may be frozen)."""
    served = pinger.served()
    return bool(served) and holds(node, served[-1])


def answered_cleanly(answers) -> None:
    """200, or 503 with the JSON error while the writer moves; never a 500."""
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, statuses
    assert {body["error"]["code"] for status, body in answers if status == 503} <= {
        "database_unavailable"}


def test_writes_go_through_the_first_node_and_through_the_second_when_the_first_is_killed(
        app, nodes, market):
    pinger = Pinger(app, nodes, market.key)
    try:
        assert eventually(lambda: latest_on(pinger, nodes[0]), 10), pinger.answers[-3:]
        os.kill(nodes[0].service.pid(), signal.SIGKILL)
        assert eventually(lambda: not nodes[0].service.alive(), 5)
        served = len(pinger.served())
        assert eventually(lambda: len(pinger.served()) > served + 5
                          and latest_on(pinger, nodes[1]), 15), pinger.answers[-3:]
        nodes[0].stop()
        nodes[0].start()
        assert eventually(lambda: latest_on(pinger, nodes[0]), 15), pinger.answers[-3:]
    finally:
        answers = pinger.stop()
    answered_cleanly(answers)


def test_a_frozen_first_node_is_left_for_the_second_and_taken_back_once_it_thaws(
        app, nodes, market):
    pinger = Pinger(app, nodes, market.key)
    frozen = nodes[0].service.pid()
    try:
        assert eventually(lambda: latest_on(pinger, nodes[0]), 10), pinger.answers[-3:]
        os.kill(frozen, signal.SIGSTOP)
        served = len(pinger.served())
        assert eventually(lambda: len(pinger.served()) > served + 5
                          and latest_on(pinger, nodes[1]), 15), pinger.answers[-3:]
    finally:
        os.kill(frozen, signal.SIGCONT)
    try:
        assert eventually(lambda: latest_on(pinger, nodes[0]), 15), pinger.answers[-3:]
    finally:
        answers = pinger.stop()
    answered_cleanly(answers)
