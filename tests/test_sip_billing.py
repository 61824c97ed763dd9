"""What gets billed cannot be forged: in-dialog requests are relayed only
inside a call the edge set up, and only from its two ends; a call's events
are tied to its calls.id; Kamailio's database user can do no more than the
edge needs (issue 10)."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.kamailio_rpc import RPCError
from tests.conftest import SIP_DOMAIN, next_loopback
from tests.private_stack import eventually
from tests.procedures import call_event, claim
from tests.raw_sip import request, send, status
from tests.sip import free_port
from tests.test_sip_edge import reserve
from tests.test_sip_security import banned, is_banned  # noqa: F401 (banned is a fixture)


@dataclass
class Caller:
    """A publisher's user agent on a plain UDP socket: one call, dialled,
    acknowledged and hung up by hand, so a test can act in between."""

    edge: tuple[str, int]
    ip: str
    uuid: str
    call_id: str = field(default_factory=lambda: f"{uuidlib.uuid4().hex}@billing")
    from_tag: str = field(default_factory=lambda: uuidlib.uuid4().hex[:10])
    to_tag: str = ""
    contact: str = ""
    routes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, 0))
        self.port = self.sock.getsockname()[1]

    def message(self, method: str, cseq: int, *, uri: str | None = None, to_tag: str | None = None,
                from_tag: str | None = None, routes: list[str] | None = None) -> bytes:
        """A request of this call; in-dialog ones default to the call's own tags and routes."""
        to_tag = self.to_tag if to_tag is None else to_tag
        routes = self.routes if routes is None else routes
        headers = {
            "Via": f"SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{uuidlib.uuid4().hex};rport",
            "From": f"<sip:publisher@{self.ip}>;tag={from_tag or self.from_tag}",
            "To": f"<sip:{self.uuid}@{SIP_DOMAIN}>" + (f";tag={to_tag}" if to_tag else ""),
            "Call-ID": self.call_id,
            "CSeq": f"{cseq} {method}",
            "Contact": f"<sip:publisher@{self.ip}:{self.port}>",
        }
        if routes:
            headers["Route"] = ", ".join(routes)
        return request(method, uri or self.contact or f"sip:{self.uuid}@{SIP_DOMAIN}", self.ip,
                       headers=headers)

    def _final(self, timeout: float = 10) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                reply = self.sock.recv(65536).decode(errors="replace")
            except TimeoutError:
                return None
            if (status(reply) or 0) >= 200:
                return reply
        return None

    def invite(self) -> int | None:
        """Dial; on 200 keep the dialog (To-tag, Contact, route set). The final status."""
        self.sock.sendto(self.message("INVITE", 1, to_tag="", routes=[]), self.edge)
        reply = self._final()
        if status(reply) == 200:
            self.to_tag = re.search(r"\r\nTo:[^\r]*;tag=([^;>\s]+)", reply).group(1)
            self.contact = re.search(r"\r\nContact:\s*<([^>]+)>", reply).group(1)
            self.routes = [r.strip() for line in re.findall(r"\r\nRecord-Route:\s*([^\r]+)", reply)
                           for r in line.split(",")]
        return status(reply)

    def ack(self) -> None:
        self.sock.sendto(self.message("ACK", 1), self.edge)

    def bye(self) -> int | None:
        self.sock.sendto(self.message("BYE", 2), self.edge)
        return status(self._final())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def callers(edge):
    made: list[Caller] = []

    def make(ip: str, uuid: str, **fields) -> Caller:
        made.append(Caller(edge, ip, uuid, **fields))
        return made[-1]

    yield make
    for c in made:
        c.close()


def call_of(sessions, uuid: str):
    with sessions() as db:
        return db.execute(text(
            "SELECT c.answered_at, c.ended_at, c.talk_seconds, r.status FROM calls c "
            "JOIN reservations r ON r.id = c.reservation_id WHERE r.uuid = :u"), {"u": uuid}).one()


def edge_route(edge) -> str:
    return f"<sip:{edge[0]}:{edge[1]};lr>"


def connected(client, market, buyers, callers, **buyer):
    """A call up through the edge: (its caller, its buyer, its reservation)."""
    b = buyers(**buyer)
    m = market(b.uri)
    uuid = reserve(client, m.key)
    caller = callers(m.ip, uuid)
    assert caller.invite() == 200
    caller.ack()
    return caller, b, uuid


def assert_ends_right(caller: Caller, b, sessions, uuid: str) -> None:
    """The real BYE still ends the call, which was billed from its real answer."""
    assert caller.bye() == 200
    assert b.wait() == 0
    answered, ended, talk, state = call_of(sessions, uuid)
    assert ended is not None and talk > 0 and state == "completed"


def test_a_forged_bye_with_a_made_up_to_tag_is_refused_and_ends_nothing(
        client, market, buyers, callers, edge, sessions):
    caller, b, uuid = connected(client, market, buyers, callers)
    # A third party that saw the Call-ID and From-tag (the buyer sees both).
    forged = caller.message("BYE", 5, to_tag="madeup", routes=[edge_route(edge)])
    assert status(send(edge, forged, next_loopback())) == 481
    # The publisher itself, with its real route set (and the call's token in it).
    forged = caller.message("BYE", 5, to_tag="madeup")
    assert status(send(edge, forged, caller.ip)) == 481
    assert call_of(sessions, uuid)[1] is None
    assert "BYE sip:" not in b.received()
    assert_ends_right(caller, b, sessions, uuid)


def test_a_forged_ack_while_the_buyer_rings_records_no_answer(
        client, market, buyers, callers, edge, sessions):
    b = buyers(scenario="buyer_slow.xml")
    m = market(b.uri)
    uuid = reserve(client, m.key)
    caller = callers(m.ip, uuid)
    pool = ThreadPoolExecutor(1)
    dialling = pool.submit(caller.invite)
    assert b.messages_wait_for(uuid)
    # The buyer saw the Call-ID; the tags are made up.
    forged = caller.message("ACK", 1, to_tag="madeup", from_tag="madeup", routes=[edge_route(edge)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as third_party:
        third_party.bind((next_loopback(), 0))
        third_party.sendto(forged, edge)
    time.sleep(1)
    assert call_of(sessions, uuid)[0] is None
    assert dialling.result(timeout=30) == 200
    pool.shutdown()
    caller.ack()
    assert_ends_right(caller, b, sessions, uuid)


@pytest.mark.parametrize("method", ["BYE", "ACK"])
def test_in_dialog_requests_with_the_real_tags_from_a_third_party_are_refused(
        client, market, buyers, callers, edge, sessions, method):
    caller, b, uuid = connected(client, market, buyers, callers)
    copy = caller.message(method, 5 if method == "BYE" else 1)
    reply = send(edge, copy, next_loopback(), timeout=1)
    assert status(reply) == (481 if method == "BYE" else None)
    time.sleep(0.5)
    assert b.received().count(f"{method} sip:") == (1 if method == "ACK" else 0)
    assert call_of(sessions, uuid)[1] is None
    assert_ends_right(caller, b, sessions, uuid)


@pytest.fixture
def listener():
    """A UDP socket on another port of this host; what it received, after a short wait."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.settimeout(1.5)

        def received() -> bytes:
            try:
                return sock.recv(65536)
            except TimeoutError:
                return b""

        yield sock.getsockname()[1], received


@pytest.mark.parametrize("ours_first", [False, True])
def test_a_route_naming_another_host_is_never_followed(edge, listener, ours_first):
    port, received = listener
    elsewhere = f"<sip:127.0.0.1:{port};lr>"
    routes = f"{edge_route(edge)}, {elsewhere}" if ours_first else elsewhere
    source = next_loopback()
    for method in ("BYE", "INFO", "ACK"):
        message = request(method, f"sip:victim@127.0.0.1:{port}", source,
                          headers={"To": f"<sip:victim@127.0.0.1:{port}>;tag=anything",
                                   "Route": routes})
        reply = send(edge, message, source, timeout=1)
        assert status(reply) == (None if method == "ACK" else 481), reply
    assert received() == b""


def test_a_second_call_with_a_call_id_in_use_is_refused_and_the_first_is_billed_right(
        client, market, buyers, callers, sessions):
    b = buyers(calls=2)
    m = market(b.uri)
    first, second = reserve(client, m.key), reserve(client, m.key)
    up = callers(m.ip, first)
    assert up.invite() == 200
    up.ack()
    assert callers(m.ip, second, call_id=up.call_id).invite() == 400
    time.sleep(1)
    assert up.bye() == 200
    answered, ended, talk, state = call_of(sessions, first)
    assert answered is not None and ended is not None and talk >= 1 and state == "completed"
    with sessions() as db:
        assert db.execute(text("SELECT r.status, COUNT(c.id) FROM reservations r LEFT JOIN calls c "
                               "ON c.reservation_id = r.id WHERE r.uuid = :u GROUP BY r.id"),
                          {"u": second}).one() == ("reserved", 0)


@pytest.fixture
def as_kamailio(database):
    engine = create_engine(database.url("kamailio"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def test_procedures_refuse_hostile_arguments_from_kamailios_database_user(
        client, market, as_kamailio, sessions):
    m = market()
    uuid = reserve(client, m.key)
    with pytest.raises(DBAPIError, match="no publisher"):
        as_kamailio.execute(text("CALL rtb_confirm(:u, NULL, TRUE, TRUE, 'c', '127.0.0.1', 'sip', "
                                 "@r, @d, @c, @t)"), {"u": uuid})
    call = claim(as_kamailio, uuid, m.publisher_id, f"hostile-{uuid}")
    assert call.result == "claimed"
    call_event(as_kamailio, call, "answered", 200, at=time.time() - 30)
    # rtb_expire(0) would end every answered call at once; 30 s is under its floor.
    as_kamailio.execute(text("CALL rtb_expire(0)"))
    assert call_of(sessions, uuid)[1] is None
    # Events for a call it did not claim, or with the wrong token, change nothing.
    for other in (call.__class__(call.result, call.call, "0" * 32),
                  call.__class__(call.result, call.call + 1000, call.token),
                  call.__class__(call.result, call.call, "")):
        with pytest.raises(DBAPIError, match="no such call"):
            call_event(as_kamailio, other, "ended")
    assert call_of(sessions, uuid)[1] is None


def test_a_queued_event_that_keeps_failing_is_dropped_without_holding_up_the_others(
        client, market, as_kamailio, sessions, rpc, settings):
    m = market()
    uuid = reserve(client, m.key)
    call = claim(as_kamailio, uuid, m.publisher_id, f"queued-{uuid}")
    call_event(as_kamailio, call, "answered", 200, at=time.time() - 5)
    stale, failing = str(call.call + 100000), str(call.call + 100001)
    try:
        rpc.call("htable.sets", "endq", stale, f"{'0' * 32},ended,0,{time.time() - 7200:.6f}")
        rpc.call("htable.sets", "endq", failing, f"{'0' * 32},ended,0,{time.time():.6f}")
        rpc.call("htable.sets", "endq", str(call.call), f"{call.token},ended,0,{time.time():.6f}")
        assert eventually(lambda: call_of(sessions, uuid)[1] is not None, 20)
        assert eventually(lambda: not queued(rpc, stale), 10)
        assert queued(rpc, failing)
    finally:
        for key in (stale, failing, str(call.call)):
            try:
                rpc.call("htable.delete", "endq", key)
            except RPCError:
                pass
    assert call_of(sessions, uuid)[2] > 0


def queued(rpc, key: str) -> bool:
    return f'"{key}"' in json.dumps(rpc.call("htable.dump", "endq"))


def test_a_source_flooding_in_dialog_requests_is_banned(edge, rpc, banned):  # noqa: F811
    flooder = next_loopback()
    banned.append(flooder)
    bye = request("BYE", f"sip:someone@{SIP_DOMAIN}", flooder,
                  headers={"To": f"<sip:someone@{SIP_DOMAIN}>;tag=x", "Route": edge_route(edge)})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((flooder, 0))
        for _ in range(3000):
            sock.sendto(bye, edge)
    assert eventually(lambda: is_banned(rpc, flooder), 5)
