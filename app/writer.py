"""One writer among several database nodes (docs/scale-out.md: why one).

The app connects to the first node in writer-preference order that answers
within a short timeout and is synced: a plain MariaDB (`@@wsrep_on` = 0) or
a Galera node with `wsrep_ready` ON and `wsrep_local_state` 4. A watcher
thread in each process asks again every second; when the writer changes, it
shuts down the sockets of every connection to another node, so a statement
waiting on a frozen node fails at once (and its transaction is tried again,
app/db.py) instead of after a read timeout, and the pool's checkout refuses
the idle ones. Once the first node is synced again, the app moves back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref

import pymysql
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DisconnectionError

log = logging.getLogger(__name__)

# Seconds between the watcher's looks, and what a look may wait for a node.
WATCH_SECONDS = 1.0
PROBE_TIMEOUT = 1
# Looks in a row a node ahead of the writer must be usable before the app goes
# back to it: a Galera node thawed after SIGSTOP says it is synced for a few
# seconds before it learns the others evicted it, and a write there then fails
# (1180, not in the primary component).
BACK_LOOKS = 5


def synced(connection: pymysql.connections.Connection) -> bool:
    """SHOW only: a Galera node not ready refuses other statements (1047)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        if row is None or row[1] == "OFF":
            return True
        cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                       "('wsrep_ready', 'wsrep_local_state')")
        status = dict(cursor.fetchall())
    return status.get("wsrep_ready") == "ON" and status.get("wsrep_local_state") == "4"


class Writer:
    """The engine's `creator`: a connection to the writer, found in order."""

    def __init__(self, nodes: list[dict], connect_args: dict):
        """nodes: pymysql's keyword arguments for each node, in order."""
        self.nodes = nodes
        self.connect_args = connect_args
        # The node the app writes through; None until one is found.
        self.current: int | None = None
        self._sockets: dict[int, weakref.WeakSet] = {i: weakref.WeakSet() for i in range(len(nodes))}
        self._lock = threading.Lock()
        # The node ahead of the writer seen usable, and in how many looks in a row.
        self._ahead: tuple[int | None, int] = (None, 0)
        self._watcher_pid: int | None = None
        self._stopped = threading.Event()

    def _open(self, index: int, options: dict) -> pymysql.connections.Connection:
        """A connection over a socket we keep, so the watcher can shut it down,
        from the handshake on. options: pymysql's, connect_timeout and
        read_timeout among them."""
        node = self.nodes[index]
        sock = socket.create_connection((node["host"], node.get("port", 3306)),
                                        options["connect_timeout"])
        with self._lock:
            self._sockets[index].add(sock)
        connection = pymysql.connect(**{**node, **options, "defer_connect": True})
        try:
            connection.connect(sock)
        except BaseException:
            sock.close()
            raise
        connection.rtb_node = index
        return connection

    def _synced(self, index: int, options: dict) -> pymysql.connections.Connection | None:
        """A connection to the node if it is up and synced, else None; raises
        when it cannot be reached."""
        connection = self._open(index, options)
        try:
            if synced(connection):
                return connection
        except BaseException:
            connection.close()
            raise
        connection.close()
        return None

    def usable(self, index: int) -> bool:
        try:
            connection = self._synced(index, {"connect_timeout": PROBE_TIMEOUT,
                                              "read_timeout": PROBE_TIMEOUT})
        except (OSError, pymysql.MySQLError):
            return False
        if connection is not None:
            connection.close()
        return connection is not None

    def connect(self) -> pymysql.connections.Connection:
        """A connection to the writer: the first node, from the writer as last
        known on, that is up and synced. Finding another moves the writer
        there, unless the watcher moved it meanwhile: its look is newer."""
        self._watch()
        for _ in range(2):
            seen = self.current
            index, connection = self._first_synced(seen or 0)
            if self._choose(index, seen) or index == self.current:
                return connection
            connection.close()
        raise pymysql.err.OperationalError(2003, "the database writer kept changing")

    def _first_synced(self, start: int) -> tuple[int, pymysql.connections.Connection]:
        error: Exception | None = None
        for index in [*range(start, len(self.nodes)), *range(start)]:
            try:
                connection = self._synced(index, self.connect_args)
            except (OSError, pymysql.MySQLError) as refused:
                error = refused
                continue
            if connection is not None:
                return index, connection
        raise pymysql.err.OperationalError(
            2003, f"no database node is up and synced (last: {error or 'not synced'})")

    def look(self) -> None:
        """One look: the first usable node becomes the writer; one ahead of the
        writer only once it has been usable BACK_LOOKS looks in a row."""
        seen = self.current
        chosen = next((i for i in range(len(self.nodes)) if self.usable(i)), None)
        if chosen is not None and seen is not None and chosen < seen:
            looks = self._ahead[1] + 1 if self._ahead[0] == chosen else 1
            self._ahead = (chosen, looks)
            if looks < BACK_LOOKS:
                return
        self._ahead = (None, 0)
        if chosen is not None:
            self._choose(chosen, seen)

    def _choose(self, chosen: int, seen: int | None) -> bool:
        """Make `chosen` the writer if the writer is still `seen`; then cut
        every connection to another node. False if it was moved meanwhile."""
        with self._lock:
            if self.current != seen:
                return False
            if chosen == seen:
                return True
            self.current = chosen
            others = [s for i, sockets in self._sockets.items() if i != chosen for s in sockets]
        log.warning("database writer: node %d (was %s)", chosen + 1,
                    "none" if seen is None else seen + 1)
        for sock in others:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True

    def _watch(self) -> None:
        """Start this process's watcher (gunicorn forks workers after the engine is made)."""
        with self._lock:
            if self._watcher_pid == os.getpid():
                return
            self._watcher_pid = os.getpid()
        threading.Thread(target=self._run, name="rtb-writer-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(WATCH_SECONDS):
            try:
                self.look()
            except Exception:
                log.exception("database writer: the look failed")


def pymysql_nodes(urls: list[URL]) -> list[dict]:
    """Each URL as pymysql's keyword arguments, as its dialect would pass them."""
    dialect = urls[0].get_dialect()()
    return [dialect.create_connect_args(url)[1] for url in urls]


def follow(engine: Engine, writer: Writer) -> None:
    """A pooled connection to a node that is no longer the writer is not handed
    out (the pool opens another); the watcher stops with the engine."""

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection, _record, _proxy):
        if dbapi_connection.rtb_node != writer.current:
            raise DisconnectionError("this node is no longer the writer")

    event.listen(engine, "engine_disposed", lambda _engine: writer.stop())
