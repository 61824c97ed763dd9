"""Calls through the real Kamailio with our kamailio.cfg, from SIPp and sipsak
publishers on their own loopback addresses to SIPp buyers."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest
from sqlalchemy import select, text

from app import admin
from app.kamailio_rpc import RPCError
from app.models import Reservation
from tests.conftest import SIP_DOMAIN
from tests.market import next_loopback
from tests.rtbctl import run_json
from tests.polling import eventually
from tests.sip import dial, invite_text, sipsak, whitelisted


def reserve(client, key: str, **params) -> str:
    response = client.post("/rtbs.json", query_string={"key": key, **params})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rtb"]["uuid"]


def stored(sessions, uuid: str) -> Reservation:
    with sessions() as db:
        return db.scalar(select(Reservation).where(Reservation.uuid == uuid))


def add_sip_user(sessions, settings, publisher_id: int, password: str) -> str:
    username = f"pub-{uuidlib.uuid4().hex[:8]}"
    with sessions() as db:
        admin.set_sip_user(db, publisher_id, username, password,
                           realm=settings.sip_realm, domain=settings.sip_domain)
        db.commit()
    return username


def test_a_call_from_a_whitelisted_ip_reaches_the_buyer(client, market, buyers, edge, workdir, sessions):
    b = buyers()
    m = market(b.uri)
    uuid = reserve(client, m.key, caller_number="2025550123")
    call = dial(workdir, edge, uuid, source_ip=m.ip, domain=SIP_DOMAIN)
    assert call.returncode == 0, call.log
    assert b.wait() == 0
    assert f"X-RTB-Reservation: {uuid}" in b.received()
    row = stored(sessions, uuid)
    assert row.status == "completed"
    assert [(c.source, c.via) for c in row.calls] == [(m.ip, "sip")]
    shown = client.get(f"/rtbs/{uuid}.json", query_string={"key": m.key}).get_json()["rtb"]
    assert shown["status"] == "completed"


def test_a_call_with_username_and_password_reaches_the_buyer(client, market, buyers, edge, workdir,
                                                            sessions, settings):
    b = buyers()
    m = market(b.uri, whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "s3cret!")
    uuid = reserve(client, m.key)
    call = dial(workdir, edge, uuid, source_ip=next_loopback(), user=user, password="s3cret!")
    assert call.returncode == 0, call.log
    assert b.wait() == 0
    assert stored(sessions, uuid).status == "completed"


def test_a_call_over_tcp_reaches_the_buyer(client, market, buyers, edge, workdir):
    b = buyers()
    m = market(b.uri)
    call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, transport="t1")
    assert call.returncode == 0, call.log
    assert b.wait() == 0


def test_no_credentials_from_an_unknown_address_is_challenged_with_407(client, market, edge, workdir):
    m = market(whitelist=False)
    call = dial(workdir, edge, reserve(client, m.key), source_ip=next_loopback(), refused_with=407)
    assert call.returncode == 0, call.log


def test_wrong_credentials_get_403(client, market, edge, workdir, sessions, settings):
    m = market(whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "right")
    uuid = reserve(client, m.key)
    wrong_password = dial(workdir, edge, uuid, source_ip=next_loopback(), user=user,
                          password="wrong", refused_with=403)
    unknown_user = dial(workdir, edge, uuid, source_ip=next_loopback(), user="nobody-here",
                        password="right", refused_with=403)
    assert wrong_password.returncode == 0, wrong_password.log
    assert unknown_user.returncode == 0, unknown_user.log
    assert stored(sessions, uuid).status == "reserved"


def test_sipsak_with_a_wrong_password_gets_403(client, market, edge, workdir, sessions, settings):
    m = market(whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "right")
    uuid = reserve(client, m.key)
    source = next_loopback()
    out = sipsak("-s", f"sip:{uuid}@{edge[0]}:{edge[1]}", "-k", source, "-u", user, "-a", "wrong",
                 message=invite_text(uuid, SIP_DOMAIN, source), workdir=workdir)
    # sipsak answers the 407 challenge ("authorizing") and gets the final 403.
    assert "authorizing" in out and "SIP/2.0 403 Bad Credentials" in out, out


def test_a_new_password_takes_effect_at_once(client, market, buyers, edge, workdir, sessions, settings):
    b = buyers()
    m = market(b.uri, whitelist=False)
    user = add_sip_user(sessions, settings, m.publisher_id, "old")
    with sessions() as db:
        admin.set_sip_user(db, m.publisher_id, user, "new", realm=settings.sip_realm,
                           domain=settings.sip_domain)
        db.commit()
    uuid = reserve(client, m.key)
    old = dial(workdir, edge, uuid, source_ip=next_loopback(), user=user, password="old",
               refused_with=403)
    new = dial(workdir, edge, uuid, source_ip=next_loopback(), user=user, password="new")
    assert old.returncode == 0, old.log
    assert new.returncode == 0, new.log


@pytest.mark.parametrize("user_part", [
    str(uuidlib.uuid4()),
    "not-a-uuid",
    "1'or'1'='1",
    "00000000-0000-4000-8000-000000000000';DELETE%20FROM%20reservations;--",
])
def test_an_unknown_or_malformed_reservation_is_404(market, edge, workdir, user_part):
    m = market()
    call = dial(workdir, edge, user_part, source_ip=m.ip, refused_with=404)
    assert call.returncode == 0, call.log


def test_another_publishers_reservation_is_403(client, market, edge, workdir, sessions):
    mine, theirs = market(), market()
    uuid = reserve(client, theirs.key)
    call = dial(workdir, edge, uuid, source_ip=mine.ip, refused_with=403)
    assert call.returncode == 0, call.log
    assert stored(sessions, uuid).status == "reserved"


def test_an_expired_reservation_is_refused_though_kamailio_still_holds_it(client, market, edge,
                                                                         workdir, rpc, sessions):
    m = market(ttl=1)
    uuid = reserve(client, m.key)
    time.sleep(2.1)
    assert rpc.call("htable.get", "rsv", uuid)
    call = dial(workdir, edge, uuid, source_ip=m.ip, refused_with=410)
    assert call.returncode == 0, call.log
    assert stored(sessions, uuid).calls == []


def test_a_reservation_that_already_had_a_call_is_refused(client, market, buyers, edge, workdir):
    b = buyers()
    m = market(b.uri)
    uuid = reserve(client, m.key)
    assert dial(workdir, edge, uuid, source_ip=m.ip).returncode == 0
    again = dial(workdir, edge, uuid, source_ip=m.ip, refused_with=410)
    assert again.returncode == 0, again.log


def test_invites_racing_for_one_reservation_connect_once(client, market, buyers, edge, workdir,
                                                        sessions):
    # The buyer answers every INVITE it gets, so any extra relay would connect.
    b = buyers(calls=20)
    m = market(b.uri)
    uuid = reserve(client, m.key)
    # Twenty INVITEs for the same uuid in a burst, spread over the edge's workers.
    race = dial(workdir, edge, uuid, source_ip=m.ip, calls=20, rate=100000, hold_ms=500)
    assert (race.successful, race.failed) == (1, 19), race.log
    assert "410 Reservation Already Used" in race.log
    assert b.received().count(f"X-RTB-Reservation: {uuid}") == 1
    assert len(stored(sessions, uuid).calls) == 1


def test_a_request_for_another_domain_is_not_relayed(client, market, edge, workdir):
    m = market()
    call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, domain="elsewhere.example",
                refused_with=403)
    assert call.returncode == 0, call.log


def test_the_edge_answers_a_keepalive_options(edge):
    out = sipsak("-s", f"sip:{edge[0]}:{edge[1]}")
    assert "SIP/2.0 200 Keepalive" in out, out


def test_a_new_whitelisted_ip_gets_in_within_a_second(client, market, buyers, edge, workdir, env):
    b = buyers()
    m = market(b.uri, whitelist=False)
    ip = next_loopback()
    run_json(env, "publisher", "allow-ip", str(m.publisher_id), f"{ip}/32")
    call = dial(workdir, edge, reserve(client, m.key), source_ip=ip)
    assert call.returncode == 0, call.log
    assert b.wait() == 0


def test_an_address_the_edge_was_not_told_of_gets_in_within_seconds(
        client, market, buyers, edge, workdir, sessions, rpc):
    """As when the app's reload was refused or lost: RTB_WHITELIST loads it."""
    b = buyers()
    m = market(b.uri, whitelist=False)
    ip = next_loopback()
    with sessions() as db:
        db.execute(text("INSERT INTO address (grp, ip_addr, mask, port, tag) "
                        "VALUES (1, :ip, 32, 0, :tag)"), {"ip": ip, "tag": f"publisher:{m.publisher_id}"})
        db.commit()
    assert eventually(lambda: whitelisted(rpc, ip), 15)
    call = dial(workdir, edge, reserve(client, m.key), source_ip=ip)
    assert call.returncode == 0, call.log
    assert b.wait() == 0


def test_fifty_ping_then_dial_pairs_all_connect(client, market, buyers, edge, workdir):
    b = buyers(calls=50)
    m = market(b.uri)
    failed = []
    for _ in range(50):
        call = dial(workdir, edge, reserve(client, m.key), source_ip=m.ip, hold_ms=20)
        if call.returncode != 0:
            failed.append(call.log)
    assert failed == []
    assert b.wait() == 0


def test_a_reservation_missing_from_the_htable_is_found_in_the_database(client, market, buyers,
                                                                        edge, workdir, rpc):
    b = buyers()
    m = market(b.uri)
    uuid = reserve(client, m.key)
    rpc.call("htable.delete", "rsv", uuid)
    with pytest.raises(RPCError):
        rpc.call("htable.get", "rsv", uuid)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert b.wait() == 0


def test_a_reservation_made_before_a_kamailio_restart_connects_after_it(client, market, buyers,
                                                                        edge, workdir, kamailio, rpc):
    b = buyers()
    m = market(b.uri)
    uuid = reserve(client, m.key)
    kamailio.stop()
    kamailio.start()
    # Loaded from the database at start, not only found on a miss.
    assert rpc.call("htable.get", "rsv", uuid)
    call = dial(workdir, edge, uuid, source_ip=m.ip)
    assert call.returncode == 0, call.log
    assert b.wait() == 0
