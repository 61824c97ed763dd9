"""Phone-number targets at the real edge: the call goes to the target's
number through its carrier gateway (a SIPp gateway that challenges it), and
the buyer's SIP headers come with the INVITE."""

from __future__ import annotations

import re
import uuid as uuidlib

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from app import admin, gateways
from tests.gateway_sip import digest_matches, gateway_scenario, invites
from tests.procedures import claim
from tests.sip import dial, free_sip_port
from tests.test_sip_edge import reserve, stored

USER, PASSWORD = "trunk-7", "s3cret:pass word"


def add_gateway(sessions, port: int, **settings) -> str:
    name = f"gw-{uuidlib.uuid4().hex[:8]}"
    with sessions() as db:
        gateways.add(db, name, f"127.0.0.1:{port}", **settings)
        db.commit()
    return name


def number_target(gateway: str, **options) -> dict:
    return {"sip_uri": None, "number": "(202) 555-0143", "gateway": gateway, **options}


def test_a_number_target_is_dialled_at_its_gateway_which_gets_our_digest(
        client, market, buyers, edge, workdir, sessions, kamailio):
    gw = buyers(scenario=gateway_scenario(workdir, challenge=401, username=USER, password=PASSWORD))
    name = add_gateway(sessions, gw.port, username=USER, password=PASSWORD)
    m = market(targets=[number_target(name, header_changes=["X-Publisher-ID: {publisher_id}"])])
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert gw.wait() == 0, "the gateway found our digest wrong"
    challenged, answered = invites(gw.received())
    for invite in (challenged, answered):
        assert invite.startswith(f"INVITE sip:+12025550143@127.0.0.1:{gw.port} SIP/2.0"), invite
        assert f"X-Publisher-ID: {m.publisher_id}" in invite
    assert "Authorization: Digest" not in challenged
    # RFC 3261 22.2: the INVITE sent again with credentials is one CSeq on.
    assert "CSeq: 1 INVITE" in challenged and "CSeq: 2 INVITE" in answered
    used = stored(sessions, uuid)
    assert used.status == "completed"
    assert [(c.final_status, c.ended_at is not None) for c in used.calls] == [(200, True)]
    assert PASSWORD not in kamailio.service.log_file.read_text(errors="replace")


def test_the_edges_database_user_reads_a_gateway_password_only_for_a_call_it_claimed(
        client, market, database, sessions):
    name = add_gateway(sessions, 5060, username=USER, password=PASSWORD)
    m = market(targets=[number_target(name)])
    uuid = reserve(client, m.key)
    engine = create_engine(database.url("kamailio"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as edge_db:
            with pytest.raises((OperationalError, ProgrammingError), match="denied"):
                edge_db.execute(text("SELECT password FROM gateways"))
            claimed = claim(edge_db, uuid, m.publisher_id, f"{uuid}@gateway-test")
            assert edge_db.scalar(text("SELECT @d")) == "sip:+12025550143@127.0.0.1:5060"
            credentials = text("CALL rtb_gateway_auth(:call, :token, @u, @p)")
            edge_db.execute(credentials, {"call": claimed.call, "token": claimed.token})
            assert edge_db.execute(text("SELECT @u, @p")).one() == (USER, PASSWORD)
            edge_db.execute(credentials, {"call": claimed.call, "token": "0" * 32})
            assert edge_db.execute(text("SELECT @u, @p")).one() == (None, None)
    finally:
        engine.dispose()


def test_a_tcp_gateway_gets_its_prefix_before_the_digits_and_a_proxy_digest(
        client, market, buyers, edge, workdir, sessions):
    gw = buyers(scenario=gateway_scenario(workdir, challenge=407), transport="t1",
                port=free_sip_port())
    name = add_gateway(sessions, gw.port, transport="tcp", prefix="011", username=USER,
                       password=PASSWORD)
    m = market(targets=[number_target(name)])
    call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert gw.wait() == 0
    challenged, answered = invites(gw.received())
    assert answered.startswith(
        f"INVITE sip:01112025550143@127.0.0.1:{gw.port};transport=tcp SIP/2.0"), answered
    assert digest_matches(answered, "Proxy-Authorization", USER, PASSWORD), answered
    assert not digest_matches(answered, "Proxy-Authorization", USER, "another password")


def test_a_gateway_that_refuses_our_credentials_fails_the_call_with_502(
        client, market, buyers, edge, workdir, sessions):
    gw = buyers(scenario=gateway_scenario(workdir, challenge=407, refuse=True))
    name = add_gateway(sessions, gw.port, username=USER, password="wrong")
    m = market(targets=[number_target(name)])
    uuid = reserve(client, m.key)
    refused = dial(workdir, edge, uuid, source_ip=m.ip, refused_with=502)
    assert refused.returncode == 0, refused.log
    assert gw.wait() == 0
    assert len(invites(gw.received())) == 2, "the edge answers one challenge a call, no more"
    given_back = stored(sessions, uuid)
    assert [c.final_status for c in given_back.calls] == [407]
    assert given_back.status == "confirmed"


def test_the_buyer_gets_its_headers_rendered_for_the_caller(client, market, buyers, edge,
                                                           workdir):
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "header_changes": [
        "X-Publisher-ID: {publisher_id}", "X-Campaign: c{campaign_id}", "X-Lead: {uuid}",
        "X-Caller: {caller_number} in {caller_state} {caller_zip}", "X-Source: {tag:source}",
        "X-Absent: [{tag:absent}]"]}])
    uuid = reserve(client, m.key, caller_number="2025550143", caller_zip="20001", source="web")
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    invite = invites(b.received())[0]
    for line in (f"X-Publisher-ID: {m.publisher_id}", f"X-Campaign: c{m.campaign_id}",
                 f"X-Lead: {uuid}", "X-Caller: +12025550143 in DC 20001", "X-Source: web",
                 "X-Absent: []"):
        assert f"\n{line}\r" in invite or f"\n{line}\n" in invite, (line, invite)


def test_a_call_passed_to_the_next_buyer_carries_that_buyers_headers(
        client, market, buyers, edge, workdir, sessions):
    b = buyers()
    m = market(targets=[{"sip_uri": "sip:first@127.0.0.1:9", "payout": "20",
                         "header_changes": ["X-Buyer: first"]},
                        {"sip_uri": b.uri, "payout": "10", "header_changes": ["X-Buyer: second"]}])
    uuid = reserve(client, m.key)
    with sessions() as db:
        admin.edit_target(db, m.target_ids[0], enabled=False)
        db.commit()
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    invite = invites(b.received())[0]
    assert "X-Buyer: second" in invite and "X-Buyer: first" not in invite


def test_a_tag_that_would_break_the_invite_leaves_its_header_out(client, market, buyers, edge,
                                                                 workdir):
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "header_changes": [
        "X-Source: {tag:source}", "X-Publisher-ID: {publisher_id}"]}])
    uuid = reserve(client, m.key, source="web\r\nX-Injected: yes")
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    invite = invites(b.received())[0]
    assert "X-Injected" not in invite and "X-Source" not in invite
    assert f"X-Publisher-ID: {m.publisher_id}" in invite


def test_a_header_the_caller_sent_by_a_buyers_header_name_does_not_reach_the_buyer(
        client, market, buyers, edge, workdir):
    b = buyers()
    m = market(targets=[{"sip_uri": b.uri, "header_changes": ["X-Publisher-ID: {publisher_id}"]}])
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=m.ip,
                headers=("x-publisher-id: 999999", "X-Other: kept"))
    assert call.returncode == 0, call.log
    invite = invites(b.received())[0]
    assert re.findall(r"^x-publisher-id: (.*?)\r?$", invite, re.M | re.I) == [str(m.publisher_id)]
    assert "X-Other: kept" in invite
