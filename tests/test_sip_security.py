"""The edge under hostile input: malformed, oversized and injected requests
get the right 4xx or no answer and leave the database alone; floods and
password guessing get their source banned, and nobody else."""

from __future__ import annotations

import socket
import threading
import time
import uuid as uuidlib
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import text

from app.kamailio_rpc import RPCError
from app.stack.kamailio import Kamailio
from app.stack.redis import redis_url
from tests.conftest import SIP_DOMAIN
from tests.market import next_loopback
from tests.raw_sip import digest_invite, flood, keepalive, request, send
from tests.sip import dial, free_port, free_sip_port
from tests.test_pstn import pstn as carrier  # noqa: F401 (a fixture)
from tests.test_sip_edge import add_sip_user, reserve

UNCHANGED_TABLES = ["publishers", "campaigns", "targets", "postback_keys", "carriers", "numbers",
                    "caller_reservations", "key_rate_windows", "pings", "subscriber", "address",
                    "version"]
# Kamailio's timer may turn reservations 'expired', and end the calls earlier
# tests left up, meanwhile: everything else must stay.
RESERVATIONS = """SELECT COUNT(*), SUM(status IN ('claimed', 'completed', 'no-target')),
    BIT_XOR(CRC32(CONCAT_WS('|', id, uuid, key_id, publisher_id, target_id, payout, candidates,
                            expires_at, IFNULL(confirmed_at, '-')))) FROM reservations"""
CALLS = """SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', id, reservation_id, target_id, call_id,
                                                  via, source, claimed_at, token))) FROM calls"""


def fingerprint(sessions) -> tuple:
    with sessions() as db:
        sums = db.execute(text(f"CHECKSUM TABLE {', '.join(UNCHANGED_TABLES)}")).all()
        return (tuple(sums), tuple(db.execute(text(RESERVATIONS)).one()),
                tuple(db.execute(text(CALLS)).one()))


@pytest.fixture
def harmless(sessions, edge, kamailio):
    """`with harmless():` the database is as it was, and the edge still answers, after it."""

    @contextmanager
    def check():
        before = fingerprint(sessions)
        yield
        assert keepalive(edge) == 200
        assert kamailio.service.alive()
        assert fingerprint(sessions) == before

    return check


UUID_URI = f"sip:{uuidlib.uuid4()}@{SIP_DOMAIN}"
MALFORMED = {
    "garbage": (b"\x00\xff\xfe garbage\r\n\r\n", None),
    "bare line feeds": (b"INVITE\n\n", None),
    "truncated headers": (request("INVITE", UUID_URI, "127.0.0.1")[:70], None),
    "no Call-ID": (request("INVITE", UUID_URI, "127.0.0.1", drop=("Call-ID",)), None),
    "no CSeq": (request("INVITE", UUID_URI, "127.0.0.1", drop=("CSeq",)), None),
    "no Via": (request("INVITE", UUID_URI, "127.0.0.1", drop=("Via",)), None),
    "no From": (request("INVITE", UUID_URI, "127.0.0.1", drop=("From",)), None),
    "negative Content-Length": (request("INVITE", UUID_URI, "127.0.0.1",
                                        headers={"Content-Length": "-5"}), None),
    "CSeq of another method": (request("INVITE", UUID_URI, "127.0.0.1",
                                       headers={"CSeq": "1 BYE"}), 400),
    "CSeq not a number": (request("INVITE", UUID_URI, "127.0.0.1",
                                  headers={"CSeq": "one INVITE"}), 400),
    "unparseable Request-URI": (request("INVITE", "sip:@@", "127.0.0.1"), 400),
    "not a SIP URI": (request("INVITE", "http://x/", "127.0.0.1"), 400),
    "SIP/3.0": (request("INVITE", UUID_URI, "127.0.0.1").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
                None),
    "quote in the From URI": (request("INVITE", UUID_URI, "127.0.0.1",
                                      headers={"From": "<sip:x'\";--@h>;tag=1"}), 400),
    "Max-Forwards 0": (request("INVITE", UUID_URI, "127.0.0.1", headers={"Max-Forwards": "0"}), 483),
    "5 kB Request-URI": (request("INVITE", f"sip:{'8' * 5000}@{SIP_DOMAIN}", "127.0.0.1"), 414),
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_gets_its_4xx_or_no_answer(edge, harmless, case, transport):
    message, expected = MALFORMED[case]
    with harmless():
        reply = send(edge, message, transport=transport, timeout=1)
    assert (reply or "")[8:11] == (str(expected) if expected else ""), reply


def test_a_body_longer_than_its_content_length_says_is_400_over_udp(edge, harmless):
    message = request("INVITE", UUID_URI, "127.0.0.1", headers={"Content-Length": "500"})
    with harmless():
        assert (send(edge, message) or "")[8:11] == "400"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("size", [20000, 64000])
def test_an_oversized_request_is_refused_or_dropped(edge, harmless, transport, size):
    # Over UDP it reaches the script (513, up to the largest datagram); over
    # TCP Kamailio's 16 kB read buffer overflows first and it drops the connection.
    message = request("INVITE", UUID_URI, "127.0.0.1", headers={"X-Big": "a" * size})
    with harmless():
        reply = send(edge, message, transport=transport)
    assert (reply or "")[8:11] == ("513" if transport == "udp" else ""), reply


HOSTILE = ["x'%20OR%201=1%20--", "';--", "1'or'1'='1", "%00%27%22%5c", "a\\'b\"c;--%",
           "8005550100'%3BDELETE%20FROM%20reservations%3B--", "9" * 3000, "b" * 3000]
PLACES = ["Request-URI", "From", "To", "P-Asserted-Identity", "Call-ID", "X-Custom"]


def hostile_request(place: str, value: str, user: str, source: str) -> bytes:
    uri = f"sip:{value if place == 'Request-URI' else user}@{SIP_DOMAIN}"
    headers = {
        "From": {"From": f"<sip:{value}@{source}>;tag=1"},
        "To": {"To": f"<sip:{value}@{SIP_DOMAIN}>"},
        "P-Asserted-Identity": {"P-Asserted-Identity": f"<sip:{value}@carrier.invalid>"},
        "Call-ID": {"Call-ID": value},
        "X-Custom": {"X-Custom": value},
    }.get(place, {})
    return request("INVITE", uri, source, headers=headers)


def refused(edge, message: bytes, source: str) -> str:
    """The status line of the answer: a 4xx, or '' when the request was dropped."""
    reply = send(edge, message, source, timeout=1.5)
    assert reply is None or reply[8:9] == "4", reply
    return (reply or "").split("\r\n")[0]


@pytest.mark.parametrize("place", PLACES)
def test_hostile_values_from_a_publisher_are_refused_and_harmless(market, edge, harmless, place):
    m = market()
    with harmless():
        answers = {refused(edge, hostile_request(place, value, str(uuidlib.uuid4()), m.ip), m.ip)
                   for value in HOSTILE}
    # Nothing is found, or the request is malformed (400, 414), or dropped.
    assert answers <= {"SIP/2.0 404 Reservation Not Found", "SIP/2.0 400 Invalid From Header",
                       "SIP/2.0 400 Bad To header", "SIP/2.0 414 Request-URI Too Long",
                       "SIP/2.0 400 Call-ID Too Long", ""}, answers


@pytest.mark.parametrize("place", PLACES)
def test_hostile_values_from_a_carrier_are_refused_and_harmless(market, carrier, edge, harmless,
                                                               place):
    m = market()
    carrier_ip, number = carrier(m.campaign_id)
    with harmless():
        answers = {refused(edge, hostile_request(place, value, number, carrier_ip), carrier_ip)
                   for value in HOSTILE}
    assert answers <= {"SIP/2.0 404 No Reservation For This Call", "SIP/2.0 400 Invalid From Header",
                       "SIP/2.0 400 Bad To header", "SIP/2.0 414 Request-URI Too Long",
                       "SIP/2.0 400 Call-ID Too Long", ""}, answers


def test_a_carrier_call_without_a_numeric_caller_id_still_reaches_a_held_number(
        client, market, carrier, buyers, edge, workdir):
    b = buyers()
    m = market(b.uri)
    carrier_ip, number = carrier(m.campaign_id)
    held = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]
    assert held["inbound_number"] == number
    call = dial(workdir, edge, number, source_ip=carrier_ip, caller_id=("from", "anonymous"))
    assert call.returncode == 0, call.log
    assert f"X-RTB-Reservation: {held['uuid']}" in b.received()


# ------------------------------------------------------------------ bans

@pytest.fixture
def banned(rpc):
    """Addresses a test gets banned; their bans and failure counts go with it."""
    addresses: list[str] = []
    yield addresses
    for address in addresses:
        for table in ("ipban", "authfail"):
            try:
                rpc.call("htable.delete", table, address)
            except RPCError:
                pass


def is_banned(rpc, address: str) -> bool:
    try:
        rpc.call("htable.get", "ipban", address)
    except RPCError:
        return False
    return True


def burst(edge, source: str, count: int = 3000, per_second: int = 3000) -> None:
    """`count` keepalives from one source at about `per_second`, in bounded time."""
    start = time.monotonic()
    for sent in range(0, count, 30):
        flood(edge, source, 30)
        time.sleep(max(0.0, start + (sent + 30) / per_second - time.monotonic()))


def test_a_flooding_source_is_banned_while_a_whitelisted_publishers_call_connects(
        client, market, buyers, edge, workdir, rpc, banned):
    b = buyers()
    m = market(b.uri)
    flooder = next_loopback()
    banned.append(flooder)
    assert keepalive(edge, flooder) == 200
    flooding = threading.Thread(target=burst, args=(edge, flooder))
    flooding.start()
    call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip)
    flooding.join(timeout=30)
    assert call.returncode == 0, call.log
    assert b.wait() == 0
    assert is_banned(rpc, flooder)
    assert keepalive(edge, flooder, timeout=2) is None
    assert keepalive(edge, next_loopback()) == 200


@pytest.mark.parametrize("who", ["publisher", "carrier"])
def test_a_whitelisted_source_bursting_is_not_banned(market, carrier, edge, rpc, banned, who):
    m = market()
    source = m.ip if who == "publisher" else carrier(m.campaign_id)[0]
    banned.append(source)
    burst(edge, source)
    assert not is_banned(rpc, source)
    assert keepalive(edge, source) == 200


def test_a_source_guessing_passwords_is_banned_even_with_the_right_one(
        client, market, buyers, edge, workdir, rpc, sessions, settings, banned):
    b = buyers()
    m = market(b.uri, whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "right")
    uuid = reserve(client, m.key)
    uri, guesser = f"sip:{uuid}@{SIP_DOMAIN}", next_loopback()
    banned.append(guesser)
    for _ in range(settings.sip_auth_failures - 1):
        assert digest_invite(edge, guesser, uri, user, "wrong") == 403
    assert keepalive(edge, guesser) == 200
    assert digest_invite(edge, guesser, uri, user, "wrong") == 403
    # Banned: not even challenged, with the right password or without.
    assert digest_invite(edge, guesser, uri, user, "right", timeout=2) is None
    assert keepalive(edge, guesser, timeout=2) is None
    assert is_banned(rpc, guesser)
    rpc.call("htable.delete", "ipban", guesser)
    call = dial(workdir, edge, uuid, source_ip=guesser, user=user, password="right")
    assert call.returncode == 0, call.log
    assert b.wait() == 0


@pytest.fixture
def tcp_only_edge(settings, database, redis, tmp_path):
    """Start, once the whitelists are made, a second Kamailio on the same
    database and Redis with RTB_SIP_IP_AUTH_TCP_ONLY=1; stopped after the test."""
    started = []

    def start() -> Kamailio:
        kamailio_url = database.url("kamailio").render_as_string(hide_password=False)
        tcp_only = replace(settings, var_dir=tmp_path / "tcp-only", sip_port=free_sip_port(),
                           rpc_port=free_port(kind=socket.SOCK_STREAM),
                           kamailio_database_url_override=kamailio_url, sip_ip_auth_tcp_only=True,
                           redis_url_override=redis_url(settings))
        started.append(Kamailio(tcp_only))
        started[-1].start()
        return started[-1]

    yield start
    for part in started:
        part.stop()


def test_with_ip_auth_tcp_only_whitelisted_sources_get_in_over_tcp_alone(
        client, market, buyers, carrier, tcp_only_edge, workdir):  # noqa: F811
    b = buyers(calls=2)
    m = market(b.uri)
    carrier_ip, number = carrier(m.campaign_id)
    part = tcp_only_edge()
    edge = (part.settings.sip_addr, part.settings.sip_port)
    # Over UDP the address proves nothing: the publisher is asked for digest.
    over_udp = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, refused_with=407)
    assert over_udp.returncode == 0, over_udp.log
    over_tcp = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, transport="t1")
    assert over_tcp.returncode == 0, over_tcp.log
    reserve(client, m.key, caller_number="2025550198")
    carrier_udp = dial(workdir, edge, number, source_ip=carrier_ip,
                       caller_id=("from", "2025550198"), refused_with=407)
    assert carrier_udp.returncode == 0, carrier_udp.log
    carrier_tcp = dial(workdir, edge, number, source_ip=carrier_ip,
                       caller_id=("from", "2025550198"), transport="t1")
    assert carrier_tcp.returncode == 0, carrier_tcp.log
    assert b.wait() == 0


def test_with_ip_auth_tcp_only_a_whitelisted_source_bursting_over_udp_is_banned(
        market, tcp_only_edge):
    m = market()
    part = tcp_only_edge()
    edge = (part.settings.sip_addr, part.settings.sip_port)
    burst(edge, m.ip)
    assert is_banned(part.rpc, m.ip)
    assert keepalive(edge, m.ip, timeout=2) is None
