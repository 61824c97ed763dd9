"""The benchmark's own arithmetic (tests/bench): pure logic, no timings."""

from __future__ import annotations

from tests.bench.calls import Step, highest_held
from tests.bench.pings import parse_wrk, reserved_share
from tests.bench.report import distribution, floor_failed, markdown, percentile
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


def _run(real: dict, floors: dict) -> dict:
    return {"real": real, "floors": floors, "outcomes": {}, "reserved_share": 1.0,
            "ratios": {n: round(real["rps"] / f["rps"], 3) for n, f in floors.items()}}


def _result(fixed_steps: list[dict], real_rate: int, fixed_rate: int) -> dict:
    wrk = {"rps": 1000.0, "p50_ms": 5.0, "p99_ms": 20.0, "p999_ms": 30.0, "http_errors": 0,
           "socket_errors": 0}
    floors = {"noop": {**wrk, "rps": 4000.0}, "durable": {**wrk, "rps": 1500.0}}
    pings = {state: {c: _run(wrk, floors) for c in ("16", "64")} for state in ("fresh", "history")}
    claim = {"count": 3, "p50": 1.0, "p99": 2.0, "max": 3.0}
    return {"pings": pings,
            "calls": {"steps": {"fixed": fixed_steps, "real": []}, "real_rate": real_rate,
                      "fixed_rate": fixed_rate,
                      "ratio": round(real_rate / fixed_rate, 3) if fixed_rate else 0.0},
            "freshness": {"pairs": 10, "connected": 10, "ping_to_trying_ms": claim},
            "scale": {"at": {"1e3": {"reservations": 1000, "claim_ms": claim, "deadlocks": 0},
                             "1e6": {"reservations": 10**6, "claim_ms": claim, "deadlocks": 2}},
                      "ratio": 1.0}}


def test_a_fixed_route_that_fails_below_the_real_edge_is_no_floor():
    assert floor_failed({"fixed_rate": 200, "real_rate": 400})
    assert floor_failed({"fixed_rate": 0, "real_rate": 0})
    assert not floor_failed({"fixed_rate": 400, "real_rate": 400})
    failed = [{"rate": 100, "held": True}, {"rate": 200, "held": True}, {"rate": 300, "held": False}]
    table = markdown(_result(failed, real_rate=800, fixed_rate=200))
    calls_row = next(line for line in table.splitlines() if line.startswith("| calls/s"))
    assert "fixed route failed at 300/s" in calls_row
    assert calls_row.endswith("| **no** (floor failed) |")


def test_the_goals_table_divides_pings_by_the_durable_floor_and_history_by_fresh():
    table = markdown(_result([{"rate": 1600, "held": True}], real_rate=1600, fixed_rate=1600))
    lines = table.splitlines()
    assert lines[2] == ("| pings/s at 16 connections, 10⁶ history ÷ durable floor"
                        " | 1,000 / 1,500 = 67% | ≥ 60% | yes |")
    assert lines[3].endswith("| 20.0 ms | ≤ 25 ms | yes |")
    assert lines[4].endswith("| 1.00 pings, 1.00 claims | within ±10% | yes |")
    assert lines[5].endswith("| 1600 / 1600 = 100% | ≥ 90% | yes |")
    assert lines[-1].endswith("(2 of 3 deadlocked) | none deadlocked | **no** |")


def _pass_through(p99_ms: float, socket_errors: int = 0) -> dict:
    real = {"requests": 1600, "rps": 160.0, "p50_ms": 320.0, "p99_ms": p99_ms, "p999_ms": 600.0,
            "http_errors": 0, "socket_errors": socket_errors}
    return {"real": real, "static": {**real, "rps": 400.0}, "outcomes": {}, "reserved_share": 1.0,
            "bids": {"bid": 4800, "timeout": 1600}, "deadline_ms": 500, "connections": 64}


def test_the_pass_through_step_meets_its_goals_only_without_timed_out_requests():
    result = _result([{"rate": 1600, "held": True}], real_rate=1600, fixed_rate=1600)
    met = markdown({**result, "pass_through": _pass_through(540.0)}).splitlines()
    assert met[-3].endswith("| 160 (static targets: 400) | ≥ 150 | yes |")
    assert met[-2].endswith("| p99 ≤ 550 ms | yes |")
    assert "bid 4800, timeout 1600" in met[-1]
    late = markdown({**result, "pass_through": _pass_through(560.0)}).splitlines()
    lost = markdown({**result, "pass_through": _pass_through(100.0, socket_errors=3)}).splitlines()
    assert late[-2].endswith("| **no** |") and lost[-2].endswith("| **no** |")
