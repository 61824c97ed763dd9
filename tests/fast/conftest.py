"""Tests that need no server: no MariaDB, no Kamailio, no SIPp or sipsak.
`make test-fast` runs this folder alone, in seconds, with only the .venv.

The app here runs on a database double: a handler may open a session, but
its first statement fails the test. A test that needs the real database
belongs in tests/, beside the stack it needs."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine

from app import create_app
from app.db import make_sessionmaker
from app.settings import Settings
from tests.sip import free_port


# Override `settings`, never `env`: the suite's session-wide fixtures would
# otherwise be made once, in a run of every test, from the fast folder's env.
@pytest.fixture(scope="session")
def env_without_database(env) -> dict[str, str]:
    """The suite's settings, with a database URL where nothing listens."""
    closed = free_port(kind=socket.SOCK_STREAM)
    return {**env, "RTB_DATABASE_URL": f"mysql+pymysql://nobody:x@127.0.0.1:{closed}/rtb"}


@pytest.fixture(scope="session")
def settings(env_without_database) -> Settings:
    return Settings.from_env(env_without_database)


def _no_database():
    raise AssertionError("a test in tests/fast reached for the database; move it to tests/")


@pytest.fixture(scope="session")
def sessions(settings):
    engine = create_engine("mysql+pymysql://", creator=_no_database)
    yield make_sessionmaker(settings, engine)
    engine.dispose()


@pytest.fixture(scope="session")
def app(settings, sessions):
    return create_app(settings, sessions)


@pytest.fixture(scope="session")
def database():
    pytest.fail("tests/fast starts no MariaDB; a test that needs it belongs in tests/")


@pytest.fixture(scope="session")
def kamailio():
    pytest.fail("tests/fast starts no Kamailio; a test that needs it belongs in tests/")
