"""The bench's arithmetic and its outputs: percentiles, the goals table, the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.bench import passthrough

# Issue 12's goals.
TARGETS = {"ping_ratio": 0.60, "ping_p99_ms_16": 25.0, "call_ratio": 0.90, "flatness": 0.10}
# The table states the pings run on (see __main__): as loaded, and with 10⁶ rows of history.
STATES = {"fresh": "fresh table", "history": "10⁶ history"}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct % of values at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def distribution(values: list[float]) -> dict:
    return {"count": len(values),
            **{name: round(percentile(values, pct), 3)
               for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9), ("max", 100))}}


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def floor_failed(calls: dict) -> bool:
    """The fixed route is the edge's floor: failing a rate the real edge held (or the
    lowest rate) means it lost calls to something other than load, so it measures nothing."""
    return calls["fixed_rate"] == 0 or calls["fixed_rate"] < calls["real_rate"]


def _flat(ratio: float) -> bool:
    return abs(ratio - 1) <= TARGETS["flatness"]


def _goals(result: dict) -> list[tuple[str, str, str, str]]:
    pings = result["pings"]
    grown, fresh = pings["history"]["16"], pings["fresh"]["16"]
    durable = grown["floors"]["durable"]["rps"]
    out = [("pings/s at 16 connections, 10⁶ history ÷ durable floor",
            f"{grown['real']['rps']:,.0f} / {durable:,.0f} = {grown['ratios']['durable']:.0%}",
            f"≥ {TARGETS['ping_ratio']:.0%}", _mark(grown["ratios"]["durable"] >= TARGETS["ping_ratio"])),
           ("ping p99 at 16 connections, 10⁶ history", f"{grown['real']['p99_ms']:.1f} ms",
            f"≤ {TARGETS['ping_p99_ms_16']:.0f} ms",
            _mark(grown["real"]["p99_ms"] <= TARGETS["ping_p99_ms_16"]))]
    ping_flat = round(grown["real"]["rps"] / fresh["real"]["rps"], 3) if fresh["real"]["rps"] else 0.0
    claim_flat = result["scale"]["ratio"]
    out.append(("pings/s and claim p50, 10⁶ history ÷ 10³ history",
                f"{ping_flat:.2f} pings, {claim_flat:.2f} claims",
                f"within ±{TARGETS['flatness']:.0%}", _mark(_flat(ping_flat) and _flat(claim_flat))))
    calls = result["calls"]
    measured = f"{calls['real_rate']} / {calls['fixed_rate']} = {calls['ratio']:.0%}"
    met = _mark(calls["ratio"] >= TARGETS["call_ratio"])
    if floor_failed(calls):
        measured += f" (fixed route failed at {_failed_rate(calls)}/s: no floor)"
        met = "**no** (floor failed)"
    out.append(("calls/s with lookup + claim on capped targets ÷ fixed route", measured,
                f"≥ {TARGETS['call_ratio']:.0%}", met))
    return out


def _failed_rate(calls: dict) -> int:
    failed = [s["rate"] for s in calls["steps"]["fixed"] if not s["held"]]
    return min(failed) if failed else 0


def _details(result: dict) -> list[tuple[str, str, str, str]]:
    out = []
    for state, runs in result["pings"].items():
        for conns, ping in runs.items():
            real, floors = ping["real"], ping["floors"]
            out.append((f"pings/s, {conns} connections, {STATES[state]} (real / durable / no-op)",
                        f"{real['rps']:,.0f} / {floors['durable']['rps']:,.0f} / {floors['noop']['rps']:,.0f}"
                        f" = {ping['ratios']['durable']:.0%} / {ping['ratios']['noop']:.0%}", "", ""))
            out.append((f"ping p50 / p99 / p99.9, {conns} connections, {STATES[state]}",
                        f"{real['p50_ms']:.1f} / {real['p99_ms']:.1f} / {real['p999_ms']:.1f} ms"
                        f" (floors' p99: durable {floors['durable']['p99_ms']:.1f},"
                        f" no-op {floors['noop']['p99_ms']:.1f} ms)", "", ""))
            out.append((f"pings reserved / rejected, {conns} connections, {STATES[state]}",
                        f"{ping['reserved_share']:.0%} / {1 - ping['reserved_share']:.0%}"
                        f" (HTTP errors {real['http_errors']}, socket errors {real['socket_errors']})",
                        "", ""))
    fresh = result["freshness"]
    trying = fresh["ping_to_trying_ms"]
    out.append(("ping-then-dial pairs connected", f"{fresh['connected']} of {fresh['pairs']}",
                "all", _mark(fresh["connected"] == fresh["pairs"])))
    out.append(("ping answer → 100 Trying p50 / p99 / max",
                f"{trying['p50']:.1f} / {trying['p99']:.1f} / {trying['max']:.1f} ms", "", ""))
    for size in result["scale"]["at"].values():
        out.append((f"claim (rtb_confirm) p50 / p99, {size['reservations']:,} reservations",
                    f"{size['claim_ms']['p50']:.2f} / {size['claim_ms']['p99']:.2f} ms"
                    f" ({size['deadlocks']} of {size['claim_ms']['count']} deadlocked)",
                    "none deadlocked", _mark(size["deadlocks"] == 0)))
    return out


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(figure, measured, goal, met?): issue 12's goals first, then the figures behind
    them, then the pass-through step's (issue 13)."""
    through = passthrough.rows(result["pass_through"]) if "pass_through" in result else []
    return _goals(result) + _details(result) + through


def markdown(result: dict) -> str:
    lines = ["| figure | measured | goal | met? |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows(result)]
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
