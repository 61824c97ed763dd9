"""The real parts, once per session: a private MariaDB and Kamailio with our
kamailio.cfg on free high ports, started by the same code as `make run`.

Tests share this one stack and its data; each makes its own market (fresh
names, keys and loopback addresses) so they never see each other's rows. A
transaction rolled back after each test cannot work here: the procedures
commit inside themselves, and Kamailio reads only committed rows over its own
connection. Tests that need no server live in tests/fast (`make test-fast`).
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from app import create_app
from app.db import make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from app.stack.redis import PrivateRedis
# Market and next_loopback stay importable from here, as tests have imported them.
from tests.market import DEFAULT_TARGET, Market, make_market, next_loopback  # noqa: F401
from tests.sip import Buyer, free_sip_port

SIP_DOMAIN = "sip.rtb.test"


def stack_env(var_dir: Path) -> dict[str, str]:
    """Free ports, all different: each is held while the next is found, or
    bind(0) could give one that was just let go a second time."""
    names = ("HTTP", "RPC", "DB", "REDIS", "METRICS")
    with ExitStack() as held:
        ports = {}
        for name in names:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports[f"RTB_{name}_PORT"] = str(sock.getsockname()[1])
        ports["RTB_SIP_PORT"] = str(free_sip_port())
    return {
        "RTB_VAR_DIR": str(var_dir),
        **ports,
        "RTB_SIP_DOMAIN": SIP_DOMAIN,
        "RTB_HTTP_WORKERS": "2",
    }


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
    return stack_env(tmp_path_factory.mktemp("var"))


@pytest.fixture(scope="session")
def settings(env) -> Settings:
    return Settings.from_env(env)


def running(part):
    part.start()
    yield part
    part.stop()


@pytest.fixture(scope="session")
def database(settings):
    yield from running(PrivateMariaDB(settings))


@pytest.fixture(scope="session")
def redis(settings):
    yield from running(PrivateRedis(settings))


@pytest.fixture(scope="session")
def kamailio(settings, database, redis):
    yield from running(Kamailio(settings))


@pytest.fixture(scope="session")
def sessions(settings, database):
    factory = make_sessionmaker(settings)
    yield factory
    # Its connections closed, not left to the collector at the session's end.
    factory.kw["bind"].dispose()


@pytest.fixture(scope="session")
def app(settings, sessions, kamailio):
    return create_app(settings, sessions)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def rpc(settings, kamailio) -> KamailioRPC:
    return KamailioRPC.for_settings(settings, timeout=2)


@pytest.fixture(scope="session")
def edge(settings, kamailio) -> tuple[str, int]:
    return (settings.sip_addr, settings.sip_port)


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def buyers(workdir):
    """Start SIPp buyers (UAS) for a test; they are stopped after it."""
    started = []

    def start(calls: int = 1, **options) -> Buyer:
        started.append(Buyer(workdir, calls=calls, **options))
        return started[-1]

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def market(sessions):
    """Build a market (tests.market.make_market); each call makes a new,
    independent set. Without `targets` the campaign has one target at
    `target_uri`; other keywords go to make_market (key settings, whitelist,
    publisher_id, campaign_id)."""

    def make(target_uri: str = DEFAULT_TARGET["sip_uri"], *, payout: str = DEFAULT_TARGET["payout"],
             min_seconds: int = DEFAULT_TARGET["min_seconds"], targets: list[dict] | None = None,
             **options) -> Market:
        targets = targets or [{"sip_uri": target_uri, "payout": payout, "min_seconds": min_seconds}]
        return make_market(sessions, targets, **options)

    return make
