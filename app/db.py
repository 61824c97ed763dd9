"""Engine and sessions. Kamailio is told of changes only after a commit."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import notifier
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.mariadb import database_url


def make_engine(settings: Settings) -> Engine:
    return create_engine(
        database_url(settings),
        pool_pre_ping=True,
        pool_recycle=3600,
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
    rpc = KamailioRPC.for_settings(settings)
    factory = sessionmaker(engine or make_engine(settings), expire_on_commit=False,
                           info={notifier.RPC: rpc})
    notifier.listen(factory)
    return factory
