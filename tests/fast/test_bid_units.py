"""How a buyer's answer is judged, how a margin leaves the publisher's payout,
and how templates fill: pure logic, no server."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.bid_answers import Margin, dig, read
from app.bid_templates import PingFacts, check_header, check_template, check_url, fill_body, fill_url

NO_MARGIN = Margin()
FACTS = PingFacts("0b8e6f0c-8d7e-4a57-9d1e-2f3a4b5c6d7e", "+12125550123", "NY", "10001", 7, 3,
                  {"sub id": "a&b=c", "quote": 'say "hi"\n'})


def answer(body, status=200, fields=None, max_bid=None, margin=NO_MARGIN):
    fields = fields or {"seconds": "seconds"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read(9, status, raw, 12.5, fields, max_bid).priced(margin)


def test_a_phone_number_is_a_destination_only_for_a_target_with_a_gateway():
    raw = json.dumps({"bidAmount": 5, "phoneNumber": "(212) 555-0199"}).encode()
    through_gateway = read(9, 200, raw, 12.5, None, None, has_gateway=True)
    without = read(9, 200, raw, 12.5, None, None)
    assert (through_gateway.outcome, through_gateway.destination) == ("bid", "+12125550199")
    assert (without.outcome, without.reason, without.destination) == (
        "error", "number_needs_gateway", "+12125550199")


def test_a_ringba_answer_is_a_bid_with_its_id_destination_and_expiry():
    found = answer({"bidId": "B1", "bidAmount": 15.5, "sipAddress": "sip:RTBB1@192.0.2.1",
                    "expireInSeconds": 40})
    assert (found.outcome, found.amount, found.payout, found.bid_id, found.destination,
            found.expires_in) == ("bid", Decimal("15.50"), Decimal("15.50"), "B1",
                                  "sip:RTBB1@192.0.2.1", 40)


@pytest.mark.parametrize("body, outcome, reason", [
    ({"bidId": "B", "bidAmount": 0, "rejectReason": "no"}, "no_bid", None),
    ({}, "no_bid", None),
    ({"bidAmount": -3, "sipAddress": "sip:a@b"}, "no_bid", None),
    ({"bidAmount": "lots", "sipAddress": "sip:a@b"}, "error", "bad_amount"),
    ({"bidAmount": 5}, "error", "no_destination"),
    ({"bidAmount": 5, "sipAddress": "mailto:x@y"}, "error", "bad_destination"),
    ({"bidAmount": 5, "phoneNumber": "+1 212 555 0199"}, "error", "number_needs_gateway"),
    ({"bidAmount": 5, "sipAddress": "sip:a@b", "expireInSeconds": 0}, "error", "expired"),
    (b"<html>no</html>", "error", "not_json"),
    (b"[" * 50000 + b"]" * 50000, "error", "not_json"),
    ({"bidAmount": "1e999999", "sipAddress": "sip:a@b"}, "error", "bad_amount"),
    ({"bidAmount": 5, "sipAddress": "sip:a@b", "seconds": 10**12}, "error", "bad_seconds"),
])
def test_an_answer_that_is_not_a_usable_bid_says_why(body, outcome, reason):
    found = answer(body)
    assert (found.outcome, found.reason, found.payout) == (outcome, reason, None)


def test_a_number_destination_is_kept_in_e164():
    assert answer({"bidAmount": 5, "phoneNumber": "(212) 555-0199"}).destination == "+12125550199"


def test_sip_address_is_preferred_to_phone_number():
    found = answer({"bidAmount": 5, "phoneNumber": "+12125550199", "sipAddress": "sip:a@b"})
    assert (found.outcome, found.destination) == ("bid", "sip:a@b")


def test_http_failures_and_no_content_are_told_apart():
    assert (answer(b"", status=204).outcome, answer({}, status=503).reason) == ("no_bid", "http_503")


def test_a_bid_above_max_bid_is_over_max():
    found = answer({"bidAmount": 6.01, "sipAddress": "sip:a@b"}, max_bid=Decimal("6"))
    assert (found.outcome, found.amount, found.payout) == ("over_max", Decimal("6.01"), None)


def test_bid_fields_read_other_paths():
    fields = {"amount": "data.bids.0.price", "destination": "data.route", "id": "data.ref",
              "seconds": "data.duration"}
    found = answer({"data": {"bids": [{"price": "9.99"}], "route": "sip:x@y", "ref": 12,
                             "duration": 90}}, fields=fields)
    assert (found.amount, found.destination, found.bid_id, found.seconds) == (
        Decimal("9.99"), "sip:x@y", "12", 90)


def test_dig_finds_nothing_where_the_path_leads_nowhere():
    assert [dig({"a": [1]}, p) for p in ("a.1", "a.x", "b", "a.0")] == [None, None, None, 1]


@pytest.mark.parametrize("margin, bid, payout", [
    (Margin(percent=Decimal(20)), "15", "12.00"),
    (Margin(amount=Decimal("1.50")), "10", "8.50"),
    (Margin(percent=Decimal(10), minimum=Decimal(3)), "10", "7.00"),
    (Margin(amount=Decimal(5)), "5", None),
    (Margin(amount=Decimal(5), allow_loss=True), "4", "0"),
    (Margin(), "3.33", "3.33"),
])
def test_the_publisher_is_paid_the_bid_less_the_margin(margin, bid, payout):
    assert margin.payout(Decimal(bid)) == (None if payout is None else Decimal(payout))


def test_a_bid_under_the_margin_stays_a_bid_that_takes_no_call():
    found = answer({"bidAmount": 1, "sipAddress": "sip:a@b"}, margin=Margin(amount=Decimal(2)))
    assert (found.outcome, found.reason, found.payout) == ("bid", "below_margin", None)


def test_url_tokens_are_url_encoded():
    url = fill_url("http://b.test/bid?cid={caller_number}&sub={tag:sub id}&u={uuid}", FACTS)
    assert url == ("http://b.test/bid?cid=%2B12125550123&sub=a%26b%3Dc"
                   "&u=0b8e6f0c-8d7e-4a57-9d1e-2f3a4b5c6d7e")


def test_body_tokens_are_json_escaped_and_the_body_s_own_braces_stay():
    body = fill_body('{"cid": "{caller_number}", "q": "{tag:quote}", "n": {"zip": "{caller_zip}"},'
                     ' "missing": "{tag:none}"}', FACTS)
    assert json.loads(body) == {"cid": "+12125550123", "q": 'say "hi"\n', "n": {"zip": "10001"},
                                "missing": ""}


def test_the_default_body_carries_the_ping_and_every_tag():
    assert json.loads(FACTS.default_body()) == {
        "sub id": "a&b=c", "quote": 'say "hi"\n', "caller_number": "+12125550123",
        "caller_state": "NY", "caller_zip": "10001", "publisher_id": 7, "campaign_id": 3,
        "uuid": "0b8e6f0c-8d7e-4a57-9d1e-2f3a4b5c6d7e"}


@pytest.mark.parametrize("check, value", [
    (check_template, "http://b.test/?x={callr_number}"),
    (check_url, "ftp://b.test/bid"),
    (check_url, "file:///etc/passwd"),
    (check_url, "http:///nohost"),
    (check_header, "Bad Name: x"),
    (check_header, "X-A: b\r\nX-Injected: 1"),
    (check_header, "no colon"),
])
def test_bad_templates_urls_and_headers_are_refused(check, value):
    with pytest.raises(ValueError):
        check(value)


def test_a_far_expiry_is_kept_to_a_day():
    assert answer({"bidAmount": 5, "sipAddress": "sip:a@b", "expireInSeconds": 10**12}).expires_in == 86400
