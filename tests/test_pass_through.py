"""Pass-through targets: each ping asks them for a live bid over real HTTP
(tests.http_buyers, on loopback), and the best payout wins, bid or static."""

from __future__ import annotations

import json
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app import admin
from app.domain_errors import Invalid
from app.models import Bid, Reservation
from tests.http_buyers import HttpBuyers

SIP = "sip:buyer@127.0.0.1:9"


@pytest.fixture(scope="module")
def http_buyers():
    server = HttpBuyers()
    yield server
    server.stop()


@pytest.fixture
def buyer(http_buyers):
    """A buyer with a fresh path; its URL."""
    def add(**behaviour) -> str:
        return http_buyers.add(uuidlib.uuid4().hex, **behaviour)
    return add


def passing(url: str, **options) -> dict:
    """A pass-through target's admin.add_target keywords."""
    return {"sip_uri": None, "payout": None, "bid_url": url, **options}


def ringba(amount, destination=SIP, **more) -> dict:
    return {"bidId": f"bid-{amount}", "bidAmount": amount, "sipAddress": destination, **more}


def ping(client, key: str, **params) -> dict:
    return client.post("/rtbs.json", data={"key": key, **params}).get_json()["rtb"]


def bids_of(sessions, uuid: str) -> dict[int, Bid]:
    with sessions() as db:
        return {b.target_id: b for b in db.scalars(select(Bid).where(Bid.uuid == uuid))}


def reservation(sessions, uuid: str) -> Reservation:
    with sessions() as db:
        return db.scalar(select(Reservation).where(Reservation.uuid == uuid))


def test_a_live_bid_above_the_static_payout_wins_and_the_reservation_records_it(
        client, market, buyer, sessions):
    url = buyer(delay=0.05, body=ringba(15, "sip:RTB7@127.0.0.1:5099", expireInSeconds=30))
    m = market(targets=[{"sip_uri": SIP, "payout": "10"}, passing(url)])
    rtb = ping(client, m.key, caller_number="2125550123")
    assert (rtb["status"], rtb["retreaver_payout"]) == ("reserved", 15.0)
    made = reservation(sessions, rtb["uuid"])
    won = bids_of(sessions, rtb["uuid"])[m.target_ids[1]]
    assert (made.target_id, made.candidates) == (m.target_ids[1], f"{m.target_ids[1]},{m.target_ids[0]}")
    assert (won.outcome, won.amount, won.bid_id, won.destination) == (
        "bid", Decimal("15.00"), "bid-15", "sip:RTB7@127.0.0.1:5099")
    assert won.expires_at - made.created_at <= timedelta(seconds=31)


def test_a_bid_s_expiry_before_the_key_s_ttl_ends_the_reservation_sooner(
        client, market, buyer, sessions):
    m = market(targets=[passing(buyer(body=ringba(5, expireInSeconds=5)))], ttl=600)
    made = reservation(sessions, ping(client, m.key)["uuid"])
    assert made.expires_at - made.created_at <= timedelta(seconds=6)


def test_the_margin_is_taken_before_bids_compete_with_static_payouts(
        client, market, buyer, sessions):
    m = market(targets=[{"sip_uri": SIP, "payout": "12.5"}, passing(buyer(body=ringba(15)))])
    with sessions() as db:
        admin.set_margin(db, m.campaign_id, "20%")
        db.commit()
    rtb = ping(client, m.key)
    assert (rtb["retreaver_payout"], reservation(sessions, rtb["uuid"]).target_id) == (
        12.5, m.target_ids[0])
    assert bids_of(sessions, rtb["uuid"])[m.target_ids[1]].payout == Decimal("12.00")
    with sessions() as db:
        admin.set_margin(db, m.campaign_id, "1.50")
        db.commit()
    assert ping(client, m.key)["retreaver_payout"] == 13.5


def test_a_bid_that_does_not_cover_the_margin_takes_a_call_only_at_a_loss(
        client, market, buyer, sessions):
    m = market(targets=[passing(buyer(body=ringba(2)))])
    with sessions() as db:
        admin.set_margin(db, m.campaign_id, "10%", min_margin=Decimal(3))
        db.commit()
    assert ping(client, m.key) == {"status": "rejected", "reason": "no_bid"}
    with sessions() as db:
        admin.set_margin(db, m.campaign_id, "10%", min_margin=Decimal(3), allow_loss=True)
        db.commit()
    assert ping(client, m.key)["retreaver_payout"] == 0.0


def test_every_buyer_s_answer_is_kept_and_a_silent_one_does_not_stop_the_others(
        client, market, buyer, sessions):
    m = market(targets=[passing(buyer(delay=0.1, body=ringba(8))),
                        passing(buyer(delay=0.1, body=ringba(9))),
                        passing(buyer(delay=0.1, body={"bidAmount": 0})),
                        passing(buyer(never=True), bid_timeout_ms=300)])
    rtb = ping(client, m.key)
    assert (rtb["status"], rtb["retreaver_payout"]) == ("reserved", 9.0)
    answers = bids_of(sessions, rtb["uuid"])
    assert [answers[t].outcome for t in m.target_ids] == ["bid", "bid", "no_bid", "timeout"]
    assert answers[m.target_ids[3]].duration_ms >= 300


HOSTILE = [
    ({"body": b"x" * (70 * 1024)}, "error", "too_large"),
    ({"body": b"x" * (70 * 1024), "chunked": True}, "error", "too_large"),
    ({"body": b"<html>bid: 5</html>"}, "error", "not_json"),
    ({"status": 302, "headers": {"Location": "http://127.0.0.1:9/"}}, "error", "redirect"),
    ({"status": 500}, "error", "http_500"),
    ({"body": json.dumps(ringba(50)).encode(), "drip": 0.05}, "timeout", "slow_body"),
    ({"body": ringba(50)}, "over_max", None),
    ({"body": ringba(5, None, phoneNumber="+12125550199")}, "error", "number_needs_gateway"),
]


@pytest.mark.parametrize("behaviour, outcome, reason", HOSTILE,
                         ids=[h[2] or h[1] for h in HOSTILE])
def test_a_hostile_or_unusable_buyer_is_an_error_for_it_alone(
        client, market, buyer, sessions, behaviour, outcome, reason):
    m = market(targets=[passing(buyer(**behaviour), max_bid=Decimal(20)),
                        passing(buyer(body=ringba(4)))])
    rtb = ping(client, m.key)
    assert (rtb["status"], rtb["retreaver_payout"]) == ("reserved", 4.0)
    bad = bids_of(sessions, rtb["uuid"])[m.target_ids[0]]
    assert (bad.outcome, bad.reason, bad.payout) == (outcome, reason, None)


def test_a_number_only_bid_keeps_its_number(client, market, buyer, sessions):
    m = market(targets=[passing(buyer(body={"bidAmount": 5, "phoneNumber": "212-555-0199"}))])
    rtb = ping(client, m.key)
    assert rtb == {"status": "rejected", "reason": "no_bid"}
    with sessions() as db:
        kept = db.scalar(select(Bid).where(Bid.key_id == m.key_id))
    assert (kept.outcome, kept.reason, kept.destination) == (
        "error", "number_needs_gateway", "+12125550199")


def test_a_buyer_slower_than_the_ping_deadline_is_cut_off_by_it(client, market, buyer, sessions):
    m = market(targets=[passing(buyer(delay=5, body=ringba(30)), bid_timeout_ms=10000),
                        passing(buyer(body=ringba(3)))])
    rtb = ping(client, m.key)
    late = bids_of(sessions, rtb["uuid"])[m.target_ids[0]]
    assert (rtb["retreaver_payout"], late.outcome, late.reason) == (3.0, "timeout", "ping_deadline")


def test_a_ping_no_one_bids_on_is_rejected_no_bid_unless_a_static_target_takes_it(
        client, market, buyer):
    silent = buyer(body={"bidAmount": 0})
    alone = market(targets=[passing(silent)])
    assert ping(client, alone.key) == {"status": "rejected", "reason": "no_bid"}
    with_static = market(targets=[passing(silent), {"sip_uri": SIP, "payout": "2"}])
    assert ping(client, with_static.key)["retreaver_payout"] == 2.0


def test_hours_geo_tags_and_caps_apply_before_a_buyer_is_asked(client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    name = url.rsplit("/", 1)[1]
    later = (datetime.now(UTC).hour + 12) % 24
    for rules, params, reason in [
        ({"states": "CA"}, {"caller_number": "2125550123"}, "geo"),
        ({"tag_changes": {"vertical": ["auto"]}}, {"vertical": "home"}, "tags"),
        ({"hours": f"daily {later:02d}:00-{later:02d}:30"}, {}, "closed"),
        ({"concurrency_cap": 0}, {}, "capped"),
    ]:
        m = market(targets=[passing(url, **rules)])
        assert ping(client, m.key, **params) == {"status": "rejected", "reason": reason}
    assert http_buyers.to(name) == []


def test_a_buyer_is_sent_the_ping_by_its_templates_and_headers(client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    name = url.rsplit("/", 1)[1]
    m = market(targets=[passing(url + "?cid={caller_number}&sub={tag:sub_id}",
                                bid_body='{"caller": "{caller_number}", "note": "{tag:note}"}',
                                bid_headers=["Authorization: Bearer s3cret", "X-Pub: 1"])])
    rtb = ping(client, m.key, caller_number="2125550123", sub_id="a b&c", note='he said "hi"')
    sent = http_buyers.to(name)[-1]
    assert sent.target == f"/{name}?cid=%2B12125550123&sub=a%20b%26c"
    assert json.loads(sent.body) == {"caller": "+12125550123", "note": 'he said "hi"'}
    assert (sent.headers["authorization"], sent.headers["x-pub"]) == ("Bearer s3cret", "1")
    assert rtb["status"] == "reserved"


def test_the_default_post_body_carries_the_ping_and_its_tags(client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    m = market(targets=[passing(url)])
    rtb = ping(client, m.key, caller_number="2125550123", caller_zip="10001", age="40")
    sent = json.loads(http_buyers.to(url.rsplit("/", 1)[1])[-1].body)
    assert sent == {"caller_zip": "10001", "age": "40", "caller_number": "+12125550123",
                    "caller_state": "NY", "publisher_id": m.publisher_id,
                    "campaign_id": m.campaign_id, "uuid": rtb["uuid"]}


def test_a_get_buyer_is_asked_without_a_body(client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    m = market(targets=[passing(url + "?u={uuid}", bid_method="GET")])
    rtb = ping(client, m.key)
    sent = http_buyers.to(url.rsplit("/", 1)[1])[-1]
    assert (sent.method, sent.target.split("=")[1], sent.body) == ("GET", rtb["uuid"], b"")


@pytest.mark.parametrize("rules", [
    {"bid_url": "ftp://127.0.0.1/bid"}, {"bid_url": "http://127.0.0.1/?x={nope}"},
    {"bid_url": "http://127.0.0.1/", "bid_headers": ["X-A: 1\r\nX-B: 2"]},
    {"bid_url": "http://127.0.0.1/", "sip_uri": SIP},
    {"bid_url": "http://127.0.0.1/", "bid_timeout_ms": 0},
])
def test_a_pass_through_target_with_bad_settings_is_refused(sessions, market, rules):
    m = market()
    with sessions() as db, pytest.raises(Invalid):
        admin.add_target(db, m.campaign_id, **{"sip_uri": None, "min_seconds": 30, **rules})


def test_confirming_a_live_bid_keeps_its_payout(client, market, buyer, sessions):
    m = market(targets=[passing(buyer(body=ringba(9, expireInSeconds=30))),
                        {"sip_uri": SIP, "payout": "1"}])
    kept = ping(client, m.key)
    answer = client.put(f"/rtbs/{kept['uuid']}.json", data={"key": m.key, "status": "confirmed"})
    assert (answer.get_json()["rtb"]["status"], answer.get_json()["rtb"]["retreaver_payout"]) == (
        "confirmed", 9.0)
    assert reservation(sessions, kept["uuid"]).target_id == m.target_ids[0]


def test_a_buyer_s_seconds_field_sets_the_reservation_s_seconds(client, market, buyer):
    m = market(targets=[passing(buyer(body={**ringba(9), "duration": 120}),
                                field_changes={"seconds": "duration"})])
    assert ping(client, m.key)["retreaver_seconds"] == 120


def test_an_auto_confirm_key_confirms_the_winning_bid_at_its_payout(client, market, buyer, sessions):
    m = market(targets=[passing(buyer(body=ringba(11))), {"sip_uri": SIP, "payout": "3"}],
               auto_confirm=True)
    rtb = ping(client, m.key)
    assert (rtb["status"], rtb["retreaver_payout"]) == ("confirmed", 11.0)
    assert reservation(sessions, rtb["uuid"]).target_id == m.target_ids[0]


def test_a_key_past_its_rate_limit_asks_no_buyer(client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    m = market(targets=[passing(url)], rate_limit=1)
    answers = [client.post("/rtbs.json", data={"key": m.key}) for _ in range(5)]
    refused = [a for a in answers if a.status_code == 429]
    asked = http_buyers.to(url.rsplit("/", 1)[1])
    assert refused and 1 <= len(asked) <= len(answers) - len(refused)


def test_a_caller_s_repeat_ping_gets_their_reservation_back_without_asking_again(
        client, market, buyer, http_buyers):
    url = buyer(body=ringba(5))
    m = market(targets=[passing(url)])
    first = ping(client, m.key, caller_number="3055550142")
    again = ping(client, m.key, caller_number="3055550142")
    assert (again["uuid"], again["retreaver_ping_shield"]) == (first["uuid"], True)
    assert len(http_buyers.to(url.rsplit("/", 1)[1])) == 1
