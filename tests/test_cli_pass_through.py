"""rtbctl for live bids: pass-through targets, a campaign's margin, and what
each buyer answered, per reservation and counted per target."""

from __future__ import annotations

import pytest

from tests.http_buyers import HttpBuyers
from tests.rtbctl import run, run_json


@pytest.fixture(scope="module")
def http_buyers():
    server = HttpBuyers()
    yield server
    server.stop()


def test_a_pass_through_target_takes_every_bid_option_and_edit_changes_only_what_is_given(
        env, kamailio):
    campaign = run_json(env, "campaign", "add", "cli-pass-through")["id"]
    made = run_json(env, "target", "add", str(campaign), "--bid-url",
                    "https://buyer.test/bid?cid={caller_number}", "--min-seconds", "90",
                    "--bid-method", "get", "--bid-timeout-ms", "250", "--bid-header",
                    "Authorization: Bearer abc", "--bid-header", "X-Source: rtb",
                    "--max-bid", "40", "--bid-field", "amount=bid.price",
                    "--bid-field", "destination=bid.sip", "--states", "CA")
    assert {k: made[k] for k in ("sip_uri", "bid_url", "bid_method", "bid_timeout_ms",
                                 "bid_headers", "max_bid", "bid_fields", "states")} == {
        "sip_uri": None, "bid_url": "https://buyer.test/bid?cid={caller_number}",
        "bid_method": "GET", "bid_timeout_ms": 250,
        "bid_headers": ["Authorization: Bearer abc", "X-Source: rtb"], "max_bid": 40.0,
        "bid_fields": {"amount": "bid.price", "destination": "bid.sip"}, "states": "CA"}
    edited = run_json(env, "target", "edit", str(made["id"]), "--bid-field", "amount=",
                      "--bid-body", '{"cid": "{caller_number}"}', "--bid-method", "POST")
    assert (edited["bid_fields"], edited["bid_body"], edited["bid_method"], edited["bid_headers"],
            edited["max_bid"]) == ({"destination": "bid.sip"}, '{"cid": "{caller_number}"}',
                                   "POST", ["Authorization: Bearer abc", "X-Source: rtb"], 40.0)


@pytest.mark.parametrize("args, message", [
    (["--bid-url", "file:///etc/passwd", "--min-seconds", "60"], "http:// or https://"),
    (["--min-seconds", "60"], "--number with --gateway, or --bid-url"),
    (["--bid-url", "http://b.test/", "--min-seconds", "60", "--bid-field", "price=x"],
     "bid fields are"),
])
def test_a_pass_through_target_with_a_mistake_is_refused_in_one_line(env, kamailio, args, message):
    campaign = run_json(env, "campaign", "add", f"cli-refused-{len(args)}-{message[:4]}")["id"]
    done = run(env, "target", "add", str(campaign), *args)
    assert (done.returncode, done.stderr.count("\n")) == (1, 1) and message in done.stderr


def test_a_campaign_margin_is_a_percent_or_an_amount(env, kamailio):
    campaign = run_json(env, "campaign", "add", "cli-margin")["id"]
    assert run_json(env, "campaign", "margin", str(campaign), "20%", "--min-margin", "1") == {
        "id": campaign, "name": "cli-margin", "margin_percent": 20.0, "margin_amount": None,
        "min_margin": 1.0, "allow_loss": False}
    fixed = run_json(env, "campaign", "margin", str(campaign), "1.50", "--allow-loss")
    assert (fixed["margin_percent"], fixed["margin_amount"], fixed["allow_loss"]) == (None, 1.5, True)
    assert run(env, "campaign", "margin", str(campaign), "120%").returncode == 1


def test_reservation_show_prints_each_buyer_s_answer_and_pings_counts_them_per_target(
        env, client, market, http_buyers):
    good = http_buyers.add("cli-good", body={"bidAmount": 7, "sipAddress": "sip:b@127.0.0.1:9",
                                             "bidId": "x1"})
    bad = http_buyers.add("cli-bad", body=b"not json")
    m = market(targets=[{"sip_uri": None, "payout": None, "bid_url": good},
                        {"sip_uri": None, "payout": None, "bid_url": bad}])
    uuids = [client.post("/rtbs.json", data={"key": m.key}).get_json()["rtb"]["uuid"]
             for _ in range(2)]
    shown = run_json(env, "reservation", "show", uuids[0])
    assert [(b["target_id"], b["won"], b["outcome"], b["reason"], b["amount"], b["bid_id"])
            for b in shown["bids"]] == [(m.target_ids[0], True, "bid", None, 7.0, "x1"),
                                        (m.target_ids[1], False, "error", "not_json", None, None)]
    counted = run_json(env, "pings", "--bids", "--key", str(m.key_id))
    assert [(c["target_id"], c["outcome"], c["reason"], c["answers"]) for c in counted] == [
        (m.target_ids[0], "bid", None, 2), (m.target_ids[1], "error", "not_json", 2)]
    assert "outcome=bid" in run(env, "pings", "--bids", "--key", str(m.key_id)).stdout
