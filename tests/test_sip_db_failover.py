"""An edge given two database nodes (RTB_KAMAILIO_DATABASE_URLS, db_cluster):
two plain private MariaDB servers holding the same rows, as a cluster's
nodes would. Calls are claimed on the first; when it errs (as a Galera node
not synced does), dies (SIGKILL) or hangs (SIGSTOP: its port still accepts,
nothing answers) a new call connects through the second within seconds, no
call is relayed without its claim recorded where it was made, and the edge
goes back to the first once it answers. A second edge on the same machine
shares the RPC secret and the claims."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import text

from app import admin, create_app
from app.database_urls import private_url
from app.db import make_sessionmaker
from app.kamailio_rpc import KamailioRPC, RPCError
from app.settings import Settings
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from tests.conftest import stack_env
from tests.market import make_market
from tests.polling import eventually
from tests.sip import dial

# A node lost must cost at most this many seconds of refused calls (503, not
# relayed): DB_TIMEOUT's tries, then the next node.
FAILOVER_SECONDS = 20


def url(node: PrivateMariaDB, user: str) -> str:
    return private_url(node.settings, user).render_as_string(hide_password=False)


def signal_node(node: PrivateMariaDB, sig: int) -> None:
    if node.service.alive():
        os.kill(node.service.pid(), sig)


def reloaded(rpc: KamailioRPC) -> bool:
    try:
        rpc.call("permissions.addressReload")
    except RPCError:
        return False
    return True


class Nodes:
    def __init__(self, tmp_path_factory):
        self.nodes = [PrivateMariaDB(Settings.from_env(stack_env(tmp_path_factory.mktemp(f"db{i}"))))
                      for i in (1, 2)]
        self.env = {**stack_env(tmp_path_factory.mktemp("edge")), "RTB_SIP_TOPOLOGY_HIDING": "0"}

    def sessions_on(self, node: PrivateMariaDB):
        return make_sessionmaker(Settings.from_env({**self.env, "RTB_DATABASE_URL": url(node, "rtb")}))

    def start(self):
        for node in self.nodes:
            node.start()
        # Kamailio's user on each node, in order; its passwords exist now.
        self.env["RTB_KAMAILIO_DATABASE_URLS"] = ",".join(url(n, "kamailio") for n in self.nodes)
        self.kamailio = Kamailio(Settings.from_env(self.env))
        self.edge = (self.kamailio.settings.sip_addr, self.kamailio.settings.sip_port)
        self.first, self.second = (self.sessions_on(node) for node in self.nodes)
        # The app writes through the first node and pushes to this edge.
        app_settings = Settings.from_env({**self.env, "RTB_DATABASE_URL": url(self.nodes[0], "rtb")})
        self.client = create_app(app_settings, self.first).test_client()
        self.kamailio.start()
        return self

    def stop(self):
        self.kamailio.stop()
        for sessions in (self.first, self.second):
            sessions.kw["bind"].dispose()
        for node in self.nodes:
            signal_node(node, signal.SIGCONT)
            node.stop()

    def copy_to_second(self):
        """The second node gets the first's rows, as replication would give them."""
        dump = subprocess.run(["mariadb-dump", "--no-defaults", f"--socket={self.nodes[0].socket}",
                               "--no-create-info", "--replace", "--complete-insert",
                               "--skip-triggers", "rtb"], capture_output=True, text=True, check=True)
        self.nodes[1].root_sql(dump.stdout, database="rtb")
        # The edge reloads whitelists from whichever node it is on.
        rpc = KamailioRPC.for_settings(self.kamailio.settings, timeout=2)
        assert eventually(lambda: reloaded(rpc), 5)

    def reserve(self, key: str) -> str:
        response = self.client.post("/rtbs.json", query_string={"key": key})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["rtb"]["uuid"]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    started = Nodes(tmp_path_factory).start()
    yield started
    started.stop()


def claims(sessions, uuid: str) -> int:
    with sessions() as db:
        return db.execute(text("SELECT COUNT(*) FROM calls c JOIN reservations r "
                               "ON r.id = c.reservation_id WHERE r.uuid = :u"), {"u": uuid}).scalar()


def connects_after(nodes, workdir, uuid: str, ip: str) -> float:
    """Dial uuid until it connects; the seconds that took. Every try before
    was refused with 503, the edge's answer when it cannot claim."""
    started = time.monotonic()
    refused = []

    def connected() -> bool:
        call = dial(workdir, nodes.edge, uuid, source_ip=ip)
        refused.append(call.log)
        return call.returncode == 0

    assert eventually(connected, FAILOVER_SECONDS, interval=0.5), refused[-1]
    assert all("503 Cannot Claim Reservation" in log for log in refused[:-1]), refused
    return time.monotonic() - started


def relayed(buyer, uuid: str) -> int:
    return buyer.received().count(f"X-RTB-Reservation: {uuid}")


def test_two_edges_on_one_machine_share_the_rpc_secret_and_claim_a_reservation_once(
        nodes, buyers, workdir, tmp_path_factory):
    b = buyers()
    m = make_market(nodes.first, [{"sip_uri": b.uri}])
    with nodes.first() as db:
        admin.set_sip_user(db, m.publisher_id, f"pub{m.publisher_id}", "secret",
                           nodes.kamailio.settings.sip_realm, nodes.kamailio.settings.sip_domain)
        db.commit()
    uuid = nodes.reserve(m.key)
    nodes.copy_to_second()
    # Another edge on the same nodes: its own state folder (ports, run
    # folder, pid file), the first edge's RPC secret (a link). It loads the
    # live reservations at start, this one among them.
    settings = Settings.from_env({**stack_env(tmp_path_factory.mktemp("edge2")),
                                  "RTB_SIP_TOPOLOGY_HIDING": "0",
                                  "RTB_KAMAILIO_DATABASE_URLS": nodes.env["RTB_KAMAILIO_DATABASE_URLS"]})
    settings.rpc_secret_file.symlink_to(nodes.kamailio.settings.rpc_secret_file)
    second = Kamailio(settings)
    second.start()
    try:
        # The app holds one secret for every edge.
        rpc = KamailioRPC(settings.rpc_url, nodes.kamailio.settings.rpc_secret_file, 2)
        assert rpc.call("htable.get", "rsv", uuid)["item"]["value"].startswith(f"{m.publisher_id},")
        # Digest credentials are read through db_cluster too.
        edge = (settings.sip_addr, settings.sip_port)
        call = dial(workdir, edge, uuid, source_ip="127.0.0.1", user=f"pub{m.publisher_id}",
                    password="secret")
        assert call.returncode == 0, call.log
        again = dial(workdir, nodes.edge, uuid, source_ip=m.ip, refused_with=410)
        assert again.returncode == 0, again.log
    finally:
        second.stop()
    assert claims(nodes.first, uuid) == 1 and b.wait() == 0


# How the first node is lost, and given back: an error to every claim
# (what a Galera node not synced answers: 1047), a hung server (its port
# still accepts), a dead one.
REVOKE = "REVOKE EXECUTE ON PROCEDURE rtb.rtb_confirm FROM rtb_edge"
GRANT = "GRANT EXECUTE ON PROCEDURE rtb.rtb_confirm TO rtb_edge"
FAULTS = {"erring": (REVOKE, GRANT), "frozen": (signal.SIGSTOP, signal.SIGCONT),
          "dead": (signal.SIGKILL, signal.SIGCONT)}


def inflict(node: PrivateMariaDB, action) -> None:
    if isinstance(action, str):
        node.root_sql(action)
    else:
        signal_node(node, action)


@pytest.mark.parametrize("fault", FAULTS)
def test_an_edge_with_two_database_nodes_claims_through_the_second_when_the_first_is_lost(
        nodes, buyers, workdir, fault):
    b = buyers(calls=3)
    m = make_market(nodes.first, [{"sip_uri": b.uri}])
    before, after = nodes.reserve(m.key), nodes.reserve(m.key)
    nodes.copy_to_second()
    # The edge is on the first node (back on it, after the last test's
    # fault): a reservation only the first holds connects.
    only_first = nodes.reserve(m.key)
    assert eventually(lambda: dial(workdir, nodes.edge, only_first, source_ip=m.ip).returncode == 0,
                      FAILOVER_SECONDS, interval=1)
    assert dial(workdir, nodes.edge, before, source_ip=m.ip).returncode == 0
    assert claims(nodes.first, before) == 1 and claims(nodes.second, before) == 0

    lose, restore = FAULTS[fault]
    inflict(nodes.nodes[0], lose)
    try:
        seconds = connects_after(nodes, workdir, after, m.ip)
    finally:
        inflict(nodes.nodes[0], restore)
    print(f"{fault}: a new call connected {seconds:.1f} s after")

    assert claims(nodes.second, after) == 1
    assert b.wait() == 0
    assert [relayed(b, uuid) for uuid in (only_first, before, after)] == [1, 1, 1]
