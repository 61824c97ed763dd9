"""Engine and sessions. Kamailio is told of changes only after a commit."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app import notifier
from app.database_urls import database_url
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings

# MySQL errors for a server that is down, going down or gone away: 1053
# server shutdown in progress, 1927 connection killed, 2002/2003 cannot
# connect, 2006/2013 gone away or lost mid-query.
UNREACHABLE = {1053, 1927, 2002, 2003, 2006, 2013}


def make_engine(settings: Settings) -> Engine:
    return create_engine(
        database_url(settings),
        pool_pre_ping=True,
        pool_recycle=3600,
        # A connection for each request thread: past the pool's size, each
        # checkout opened a connection of its own and closed it after.
        pool_size=max(5, settings.http_threads),
        # Each statement sees what concurrent requests committed before it.
        isolation_level="READ COMMITTED",
        connect_args={
            "charset": "utf8mb4",
            "connect_timeout": 5,
            "read_timeout": 10,
            "write_timeout": 10,
            # Times are UTC in Python; TIMESTAMP columns convert by session zone.
            "init_command": "SET time_zone = '+00:00'",
        },
    )


def make_sessionmaker(settings: Settings, engine: Engine | None = None) -> sessionmaker[Session]:
    rpc = KamailioRPC.for_settings(settings, connections=settings.http_threads)
    factory = sessionmaker(engine or make_engine(settings), expire_on_commit=False,
                           info={notifier.RPC: rpc})
    notifier.listen(factory)
    return factory


def database_unreachable(error: DBAPIError) -> bool:
    """The database is down or went away (not: it refused a statement)."""
    return error.connection_invalidated or bool(
        error.orig and error.orig.args and error.orig.args[0] in UNREACHABLE)
