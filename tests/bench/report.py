"""The bench's arithmetic and its outputs: percentiles, the Markdown table, the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path

TARGETS = {"ping_ratio": 0.60, "ping_p99_ms_16": 25.0, "call_ratio": 0.90, "scale_ratio": 1.10}


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


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, met) for the table."""
    out = []
    for conns, ping in result["pings"].items():
        real, floor = ping["real"], ping["floor"]
        out.append((f"pings/s, {conns} connections (real / no-op floor)",
                    f"{real['rps']:,.0f} / {floor['rps']:,.0f} = {ping['ratio']:.0%}",
                    f"≥ {TARGETS['ping_ratio']:.0%}", _mark(ping["ratio"] >= TARGETS["ping_ratio"])))
        p99_ok = conns != "16" or real["p99_ms"] < TARGETS["ping_p99_ms_16"]
        out.append((f"ping latency p50 / p99 / p99.9, {conns} connections",
                    f"{real['p50_ms']:.1f} / {real['p99_ms']:.1f} / {real['p999_ms']:.1f} ms"
                    f" (floor {floor['p99_ms']:.1f} ms p99)",
                    f"p99 < {TARGETS['ping_p99_ms_16']:.0f} ms" if conns == "16" else "", 
                    _mark(p99_ok) if conns == "16" else ""))
        out.append((f"pings reserved / rejected, {conns} connections",
                    f"{ping['reserved_share']:.0%} / {1 - ping['reserved_share']:.0%}"
                    f" (HTTP errors {real['http_errors']}, socket errors {real['socket_errors']})", "", ""))
    calls = result["calls"]
    out.append(("calls/s held with < 0.1 % failed (lookup + claim / fixed route)",
                f"{calls['real_rate']} / {calls['fixed_rate']} = {calls['ratio']:.0%}",
                f"≥ {TARGETS['call_ratio']:.0%}", _mark(calls["ratio"] >= TARGETS["call_ratio"])))
    fresh = result["freshness"]
    trying = fresh["ping_to_trying_ms"]
    out.append(("ping-then-dial pairs connected", f"{fresh['connected']} of {fresh['pairs']}",
                "all", _mark(fresh["connected"] == fresh["pairs"])))
    out.append(("ping answer → 100 Trying p50 / p99 / max",
                f"{trying['p50']:.1f} / {trying['p99']:.1f} / {trying['max']:.1f} ms", "", ""))
    scale = result["scale"]
    for size in scale["at"].values():
        out.append((f"claim (rtb_confirm) p50 / p99, {size['reservations']:,} reservations",
                    f"{size['claim_ms']['p50']:.2f} / {size['claim_ms']['p99']:.2f} ms", "", ""))
    out.append(("claim cost, largest table / smallest", f"{scale['ratio']:.2f}×",
                f"≤ {TARGETS['scale_ratio']:.2f}×", _mark(scale["ratio"] <= TARGETS["scale_ratio"])))
    return out


def markdown(result: dict) -> str:
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows(result)]
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
