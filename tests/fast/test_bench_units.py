"""The benchmark's own arithmetic (tests/bench): pure logic, no timings."""

from __future__ import annotations

from tests.bench.calls import Step, highest_held
from tests.bench.pings import parse_wrk, reserved_share
from tests.bench.report import distribution, percentile
from tests.bench.scale import flatness
from tests.bench.sipua import parse


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile([7.0], 99.9) == 7.0
    assert percentile([], 50) == 0.0


def test_distribution_does_not_depend_on_order():
    assert distribution([3, 1, 2]) == distribution([1, 2, 3])
    assert distribution([3, 1, 2])["max"] == 3


def test_highest_held_rate_is_the_last_step_under_a_tenth_of_a_percent_failed():
    steps = [Step(100, 1000, 0), Step(200, 2000, 1), Step(300, 3000, 3), Step(400, 4000, 0)]
    # 3 of 3000 is exactly 0.1 %: not under it, so 300 is not held and 400 does not count.
    assert highest_held(steps) == 200
    assert highest_held([Step(100, 1000, 1)]) == 0
    assert highest_held([Step(200, 10, 0), Step(100, 10, 0)]) == 200
    assert not Step(100, 0, 0).held


def test_a_rate_is_held_when_one_of_its_tries_held():
    steps = [Step(100, 1000, 0), Step(200, 1000, 5), Step(200, 1000, 0), Step(300, 1000, 9),
             Step(300, 1000, 2)]
    assert highest_held(steps) == 200


def test_wrk_summary_line_becomes_rates_and_milliseconds():
    run = parse_wrk("Running 10s test\nBENCH 5000 10000000 2500 9000 12500 3 1\n")
    assert (run.requests, run.rps) == (5000, 500.0)
    assert (run.p50_ms, run.p99_ms, run.p999_ms) == (2.5, 9.0, 12.5)
    assert (run.http_errors, run.socket_errors) == (3, 1)


def test_reserved_share_counts_shielded_and_confirmed_pings_as_reserved():
    assert reserved_share({"reserved": 2, "confirmed": 1, "duplicate": 1, "rejected": 4}) == 0.5
    assert reserved_share({}) == 0.0


def test_flatness_compares_the_largest_table_with_the_smallest():
    at = {"1e6": {"reservations": 10**6, "claim_ms": {"p50": 2.2}},
          "1e3": {"reservations": 10**3, "claim_ms": {"p50": 2.0}}}
    assert flatness(at) == 1.1


def test_sip_response_headers_are_parsed_and_record_routes_split():
    data = (b"SIP/2.0 200 OK\r\nRecord-Route: <sip:a;lr>, <sip:b;lr>\r\nRecord-Route: <sip:c;lr>\r\n"
            b"To: <sip:x@y>;tag=abc\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n")
    reply = parse(data)
    assert reply.code == 200
    assert reply.headers["record-route"] == ["<sip:a;lr>", "<sip:b;lr>", "<sip:c;lr>"]
    assert reply.first("cseq") == "1 INVITE"
    assert parse(b"INVITE sip:x@y SIP/2.0\r\n\r\n") is None
