"""The real parts, once per session: a private MariaDB and Kamailio with our
kamailio.cfg on free high ports, started by the same code as `make run`."""

from __future__ import annotations

import itertools
import socket
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from app import admin, create_app
from app.db import make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from tests.sip import Buyer, free_port, free_sip_port

SIP_DOMAIN = "sip.rtb.test"


def stack_env(var_dir: Path) -> dict[str, str]:
    return {
        "RTB_VAR_DIR": str(var_dir),
        "RTB_HTTP_PORT": str(free_port(kind=socket.SOCK_STREAM)),
        "RTB_SIP_PORT": str(free_sip_port()),
        "RTB_RPC_PORT": str(free_port(kind=socket.SOCK_STREAM)),
        "RTB_DB_PORT": str(free_port(kind=socket.SOCK_STREAM)),
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
def kamailio(settings, database):
    yield from running(Kamailio(settings))


@pytest.fixture(scope="session")
def sessions(settings, database):
    return make_sessionmaker(settings)


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


_loopback = itertools.count(2)


def next_loopback() -> str:
    """A fresh 127.0.x.y per publisher, so whitelists never overlap across tests."""
    n = next(_loopback)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@dataclass
class Market:
    key: str
    key_id: int
    publisher_id: int
    campaign_id: int
    target_ids: list[int]
    ip: str | None

    @property
    def target_id(self) -> int:
        return self.target_ids[0]


@pytest.fixture
def market(sessions):
    """Make a publisher (whitelisted on a fresh loopback IP), a campaign with its
    targets and a postback key; each call makes a new, independent set.

    `targets` is a list of admin.add_target keyword sets; without it the
    campaign has one target at `target_uri`. Other keywords are key settings.
    """

    def make(target_uri: str = "sip:buyer@127.0.0.1:9", *, payout: str = "12.5",
             min_seconds: int = 60, targets: list[dict] | None = None, whitelist: bool = True,
             publisher_id: int | None = None, campaign_id: int | None = None,
             **key_settings) -> Market:
        suffix = uuid.uuid4().hex[:10]
        targets = targets or [{"sip_uri": target_uri, "payout": payout, "min_seconds": min_seconds}]
        with sessions() as db:
            if publisher_id is None:
                publisher_id = admin.add_publisher(db, f"publisher-{suffix}").id
            ip = next_loopback() if whitelist else None
            if ip:
                admin.allow_ip(db, publisher_id, f"{ip}/32")
            if campaign_id is None:
                campaign_id = admin.add_campaign(db, f"campaign-{suffix}").id
            target_ids = [admin.add_target(db, campaign_id, **{
                "sip_uri": "sip:buyer@127.0.0.1:9", "min_seconds": 60, **t,
                "payout": Decimal(str(t.get("payout", "12.5")))}).id for t in targets]
            key_row, key = admin.add_key(db, campaign_id, publisher_id, **key_settings)
            db.commit()
            return Market(key, key_row.id, publisher_id, campaign_id, target_ids, ip)

    return make
