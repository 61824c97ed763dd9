"""Live bids at the real SIP edge: Kamailio relays a claimed call to the
destination its bid named, and a call whose buyer is full falls back to the
next candidate's bid (SIPp buyers, HTTP buyers on loopback)."""

from __future__ import annotations

import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from app.models import Reservation
from tests.gateway_sip import digest_matches, gateway_scenario, invites
from tests.http_buyers import HttpBuyers
from tests.sip import dial
from tests.test_gateways import add_gateway


@pytest.fixture(scope="module")
def http_buyers():
    server = HttpBuyers()
    yield server
    server.stop()


def bidding(http_buyers, amount: int, destination: str, **target) -> dict:
    """A pass-through target whose buyer bids `amount` for calls to `destination`."""
    url = http_buyers.add(uuidlib.uuid4().hex,
                          body={"bidId": f"b{amount}", "bidAmount": amount, "sipAddress": destination})
    return {"sip_uri": None, "payout": None, "bid_url": url, **target}


def reserve(client, key: str) -> str:
    rtb = client.post("/rtbs.json", data={"key": key}).get_json()["rtb"]
    assert rtb["status"] == "reserved", rtb
    return rtb["uuid"]


def row(sessions, uuid: str) -> Reservation:
    with sessions() as db:
        return db.scalar(select(Reservation).where(Reservation.uuid == uuid))


def test_a_claimed_call_is_relayed_to_the_winning_bid_s_destination(
        client, market, buyers, http_buyers, edge, workdir, sessions):
    won, lost = buyers(), buyers()
    m = market(targets=[bidding(http_buyers, 20, won.uri), bidding(http_buyers, 10, lost.uri)])
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert f"X-RTB-Reservation: {uuid}" in won.received()
    assert "INVITE" not in lost.received()
    assert (row(sessions, uuid).status, float(row(sessions, uuid).payout)) == ("completed", 20.0)


def test_a_call_whose_bidder_is_full_falls_back_to_the_next_bid_skipping_an_expired_one(
        client, market, buyers, http_buyers, edge, workdir, sessions):
    first, expired, second = buyers(), buyers(), buyers()
    m = market(targets=[bidding(http_buyers, 20, first.uri, concurrency_cap=1),
                        bidding(http_buyers, 15, expired.uri),
                        bidding(http_buyers, 10, second.uri)])
    holding, arriving = reserve(client, m.key), reserve(client, m.key)
    with sessions() as db:
        db.execute(text("UPDATE bids SET expires_at = NOW() - INTERVAL 1 SECOND"
                        " WHERE uuid = :uuid AND target_id = :target"),
                   {"uuid": arriving, "target": m.target_ids[1]})
        db.commit()
    with ThreadPoolExecutor(1) as pool:
        (workdir / "held").mkdir()
        call = pool.submit(dial, workdir / "held", edge, holding, source_ip=m.ip, hold_ms=4000)
        assert first.messages_wait_for(holding)
        moved = dial(workdir, edge, arriving, source_ip=m.ip)
        assert call.result().returncode == 0
    assert moved.returncode == 0, moved.log
    assert f"X-RTB-Reservation: {arriving}" in second.received()
    assert "INVITE" not in expired.received()
    rerouted = row(sessions, arriving)
    assert (rerouted.target_id, float(rerouted.payout)) == (m.target_ids[2], 10.0)


def test_a_bid_for_a_phone_number_is_called_through_the_target_s_gateway(
        client, market, buyers, http_buyers, edge, workdir, sessions):
    gw = buyers(scenario=gateway_scenario(workdir, challenge=407))
    name = add_gateway(sessions, gw.port, username="trunk-9", password="p4ss")
    url = http_buyers.add(uuidlib.uuid4().hex,
                          body={"bidId": "n1", "bidAmount": 12, "phoneNumber": "(212) 555-0199"})
    m = market(targets=[{"sip_uri": None, "payout": None, "bid_url": url, "gateway": name}])
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert gw.wait() == 0
    challenged, answered = invites(gw.received())
    assert answered.startswith(f"INVITE sip:+12125550199@127.0.0.1:{gw.port} SIP/2.0"), answered
    assert digest_matches(answered, "Proxy-Authorization", "trunk-9", "p4ss"), answered
    assert (row(sessions, uuid).status, float(row(sessions, uuid).payout)) == ("completed", 12.0)


def test_a_bid_s_sip_destination_on_a_target_with_a_gateway_never_gets_its_credentials(
        client, market, buyers, http_buyers, edge, workdir, sessions):
    """A buyer may name any SIP URI in its bid; a challenge from there is the
    caller's to answer, not the gateway's credentials'."""
    stranger = buyers(scenario=gateway_scenario(workdir, challenge=407))
    name = add_gateway(sessions, 5060, username="trunk-9", password="p4ss")
    url = http_buyers.add(uuidlib.uuid4().hex,
                          body={"bidId": "s1", "bidAmount": 12, "sipAddress": stranger.uri})
    m = market(targets=[{"sip_uri": None, "payout": None, "bid_url": url, "gateway": name}])
    call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, refused_with=407)
    assert call.returncode == 0, call.log
    received = stranger.received()
    assert received.count("INVITE sip:") == 1 and "Authorization:" not in received
