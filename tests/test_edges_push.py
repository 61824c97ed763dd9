"""Every change is pushed to every edge (RTB_EDGES): two real Kamailios on
one database, the suite's and a second on ports of its own."""

from __future__ import annotations

import socket

import pytest

from app import create_app
from app.database_urls import database_url, kamailio_database_url
from app.db import make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.kamailio import Kamailio
from tests.conftest import running
from tests.sip import free_port, free_sip_port


@pytest.fixture(scope="module")
def second_edge(settings, kamailio, tmp_path_factory):
    """A second Kamailio on the suite's database; no topology hiding, so no Redis of its own."""
    edge = Settings.from_env({
        "RTB_VAR_DIR": str(tmp_path_factory.mktemp("edge2")),
        "RTB_SIP_PORT": str(free_sip_port()),
        "RTB_RPC_PORT": str(free_port(kind=socket.SOCK_STREAM)),
        "RTB_SIP_DOMAIN": settings.sip_domain,
        "RTB_SIP_TOPOLOGY_HIDING": "0",
        "RTB_DATABASE_URL": database_url(settings).render_as_string(hide_password=False),
        "RTB_KAMAILIO_DATABASE_URL": kamailio_database_url(settings),
    })
    # All edges share one RPC secret file.
    edge.rpc_secret_file.parent.mkdir(parents=True, exist_ok=True)
    edge.rpc_secret_file.write_text(settings.rpc_secret_file.read_text())
    yield from running(Kamailio(edge))


@pytest.fixture(scope="module")
def both_edges_app(settings, database, kamailio, second_edge):
    # An edge that is down, first in the list, does not keep the others from being told.
    down = f"http://127.0.0.1:{free_port(kind=socket.SOCK_STREAM)}/RPC"
    edges = f"{down},{settings.rpc_url},{second_edge.settings.rpc_url}"
    env_settings = Settings.from_env({
        "RTB_VAR_DIR": str(settings.var_dir), "RTB_DB_PORT": str(settings.db_port),
        "RTB_RPC_PORT": str(settings.rpc_port), "RTB_SIP_DOMAIN": settings.sip_domain,
        "RTB_EDGES": edges})
    sessions = make_sessionmaker(env_settings)
    yield create_app(env_settings, sessions)
    sessions.kw["bind"].dispose()


def test_a_reservation_reaches_every_edge_that_is_up_at_once(both_edges_app, market, settings, second_edge):
    m = market()
    answer = both_edges_app.test_client().post("/rtbs.json", query_string={"key": m.key})
    uuid = answer.get_json()["rtb"]["uuid"]
    for rpc_url in (settings.rpc_url, second_edge.settings.rpc_url):
        rpc = KamailioRPC(rpc_url, settings.rpc_secret_file, timeout=2)
        assert rpc.call("htable.get", "rsv", uuid)["item"]["value"]
