"""Engine and sessions. Kamailio is told of changes only after a commit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pymysql
from sqlalchemy import create_engine
from sqlalchemy.engine import CursorResult, Engine, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app import notifier
from app.database_urls import database_urls, edges
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.writer import Writer, follow, pymysql_nodes

# MySQL errors for a server that is down, going down or gone away: 1053
# server shutdown in progress, 1927 connection killed, 2002/2003 cannot
# connect, 2006/2013 gone away or lost mid-query.
UNREACHABLE = {1053, 1927, 2002, 2003, 2006, 2013}
# A transaction these end was rolled back and may be run again: 1213 a
# deadlock (in Galera also a conflict with a write through another node),
# 1047 a Galera node not (or no longer) synced, and a connection lost or
# killed mid-transaction (the writer died, or app/writer.py left it). Not
# 2002/2003: the connect already tried every node. 1180: a COMMIT that
# failed, rolled back (Galera: a node that lost the primary component).
TRY_AGAIN = {1047, 1180, 1213, 1053, 1927, 2006, 2013}
TRIES = 5
# Seconds before the second try; doubled for each after it.
FIRST_PAUSE = 0.1

T = TypeVar("T")


def _connect_args(timeout: int) -> dict:
    return {
        "charset": "utf8mb4",
        "connect_timeout": timeout,
        "read_timeout": 2 * timeout,
        "write_timeout": 2 * timeout,
        # Times are UTC in Python; TIMESTAMP columns convert by session zone.
        "init_command": "SET time_zone = '+00:00'",
    }


def make_engine(settings: Settings) -> Engine:
    urls = database_urls(settings)
    options = dict(
        pool_pre_ping=True,
        pool_recycle=3600,
        # No ROLLBACK as a connection goes back to the pool: every statement
        # runs in a transaction SQLAlchemy began, which it commits or rolls
        # back itself before giving the connection back. The reset was a
        # round trip after each request's COMMIT.
        pool_reset_on_return=None,
        # A connection for each request thread: past the pool's size, each
        # checkout opened a connection of its own and closed it after.
        pool_size=max(5, settings.http_threads),
        # Each statement sees what concurrent requests committed before it.
        isolation_level="READ COMMITTED",
    )
    if len(urls) == 1:
        return create_engine(urls[0], connect_args=_connect_args(5), **options)
    # Several nodes: shorter waits, so a dead or frozen node is left in seconds.
    writer = Writer(pymysql_nodes(urls), _connect_args(2))
    engine = create_engine(urls[0], creator=writer.connect, **options)
    follow(engine, writer)
    return engine


def make_sessionmaker(settings: Settings, engine: Engine | None = None) -> sessionmaker[Session]:
    rpcs = [KamailioRPC(url, settings.rpc_secret_file, settings.rpc_timeout_ms / 1000)
            for url in edges(settings)]
    factory = sessionmaker(engine or make_engine(settings), expire_on_commit=False,
                           info={notifier.RPC: rpcs})
    notifier.listen(factory)
    return factory


def retried(work: Callable[[], T], roll_back: Callable[[], None] = lambda: None) -> T:
    """work(), run again (after roll_back()) while the database answers with
    what TRY_AGAIN holds, up to TRIES times; then its error is raised."""
    attempt = 1
    while True:
        try:
            return work()
        except DBAPIError as error:
            if attempt == TRIES or not try_again(error):
                raise
        roll_back()
        time.sleep(FIRST_PAUSE * 2 ** (attempt - 1))
        attempt += 1


def try_again(error: DBAPIError) -> bool:
    return _code(error) in TRY_AGAIN


def _code(error: DBAPIError) -> int | None:
    args = error.orig.args if error.orig else ()
    return args[0] if args and isinstance(args[0], int) else None


def one_called(result: CursorResult) -> Row:
    """The one row a CALL answered, after reading the rest of its answer.

    A procedure that leaves its transaction open may still end with an error
    after its row: under Galera, a write through another node that conflicts
    aborts the transaction (1213) at any moment. SQLAlchemy closes a cursor
    without raising what the rest of the answer holds, and the caller's
    COMMIT would then commit nothing; read it here, so that error is raised
    (and the request tried again, see retried)."""
    row = result.fetchone()
    try:
        while result.cursor.nextset():
            pass
    except pymysql.err.Error as error:
        raise DBAPIError.instance(None, None, error, pymysql.err.Error) from error
    finally:
        result.close()
    if row is None:
        raise RuntimeError("the procedure answered no row")
    return row


def database_unreachable(error: DBAPIError) -> bool:
    """The database is down or went away (not: it refused a statement)."""
    return error.connection_invalidated or _code(error) in UNREACHABLE
