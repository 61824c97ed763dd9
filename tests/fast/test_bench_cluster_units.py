"""The cluster bench's arithmetic (tests/bench/cluster.py): pure logic, no timings."""

from tests.bench.calls import Step
from tests.bench.cluster import best, combine, connected, markdown, ratio, split, total
from tests.bench.pings import WrkRun


def test_runs_at_once_sum_their_counts_and_keep_the_slower_percentiles():
    run = combine([WrkRun(1000, 100.0, 5.0, 40.0, 90.0, 1, 0),
                   WrkRun(1500, 150.5, 7.0, 30.0, 95.0, 0, 2)])
    assert run == WrkRun(2500, 250.5, 7.0, 40.0, 95.0, 1, 2)


def test_sources_are_dealt_round_robin_and_stay_the_same_lists():
    sources = {ip: [ip + "-uuid"] for ip in ("a", "b", "c", "d")}
    halves = split(sources, 2)
    assert halves == [{"a": ["a-uuid"], "c": ["c-uuid"]}, {"b": ["b-uuid"], "d": ["d-uuid"]}]
    halves[0]["a"].clear()
    assert sources["a"] == []


def test_steps_at_once_count_as_one_step_at_the_total_rate():
    step = total(100, [Step(50, 500, 0), Step(50, 500, 1)])
    assert step == Step(100, 1000, 1)
    assert step.held is False


def test_ratio_is_cluster_over_single_and_zero_without_a_single_figure():
    assert ratio(150, 200) == 0.75
    assert ratio(150, 0) == 0.0


def test_a_rate_counts_its_best_try_and_none_when_it_was_not_run():
    steps = [{"rate": 50, "calls": 500, "failed": 20}, {"rate": 50, "calls": 500, "failed": 3},
             {"rate": 100, "calls": 1000, "failed": 1000}]
    assert connected(steps, 50) == (497, 500)
    assert connected(steps, 100) == (0, 1000)
    assert connected(steps, 150) is None


def test_the_best_claim_run_keeps_every_run_beside_it():
    runs = [{"claims_per_s": 90.0, "deadlocks": 1}, {"claims_per_s": 120.0, "deadlocks": 0}]
    assert best(runs, "claims_per_s") == {"claims_per_s": 120.0, "deadlocks": 0, "runs": [90.0, 120.0]}


def _side(rps: float, rate: int, claims: float, steps: list[dict]) -> dict:
    run = WrkRun(int(rps * 10), rps, 10.0, 50.0, 80.0, 0, 0).as_dict() | {"runs": [rps, rps]}
    claim = {"claims_per_s": claims, "deadlocks": 0, "runs": [claims, claims / 2],
             "claim_ms": {"count": 250, "p50": 2.0, "p90": 3.0, "p99": 4.0, "p99.9": 5.0, "max": 6.0}}
    return {"pings": {"16": run}, "calls": {"rate": rate, "steps": steps}, "claims": {"8": claim}}


def test_the_table_puts_each_figure_beside_its_ratio():
    table = markdown({"single": _side(200, 100, 800, [{"rate": 100, "calls": 1000, "failed": 0}]),
                      "cluster": _side(150, 50, 400, [{"rate": 100, "calls": 1000, "failed": 500}]),
                      "call_seconds": 10})
    assert "| pings/s, 16 connections, the better of 2 runs | 200 | 150 | 0.75 |" in table
    assert "| calls/s held (ladder 50/100/150/200, 10 s a step) | 100 | 50 | 0.50 |" in table
    assert "| calls connected at 100/s (the better of its tries) | 1000 of 1000 | 500 of 1000 | 0.50 |" in table
    assert "| claims/s (rtb_confirm), 8 connections, the better of 2 runs | 800 | 400 | 0.50 |" in table
