"""Pass-through: pings to a campaign whose four targets bid live over HTTP,
three answering after 100 ms and one never (its timeout 300 ms), from wrk
at 64 connections; the buyers are the bench's own light ones
(tests/bench/buyers.py). Every ping waits out the silent buyer's timeout, so it
takes at least 300 ms; the goal is the rate and p99 the issue sets. The
same pings to a campaign of four static targets, on the same stack just
before, are its floor: what pings cost this machine without buyers.

wrk's connections start within one silent-buyer timeout of each other, at
random (pings.write_script's ramp), not in one instant: after the wait for
the warm-up's pings to drain, 64 pings arriving together queued for the
cores, and with every ping lasting 300 ms they were the slowest 1 % of a
20 s run, its p99, where the rest of the run was under it
(docs/performance.md).

`python -m tests.bench.passthrough` runs this step alone, on a stack of
only the parts it needs (MariaDB, Redis, Kamailio, gunicorn).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid as uuidlib
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import admin
from app.settings import PingLimits
from tests.bench import pings
from tests.bench.buyers import BenchBuyers

ANSWERING, DELAY_S, SILENT_TIMEOUT_MS, CONNECTIONS = 3, 0.1, 300, 64
GOAL_RPS = 150
KEYS = 10


def load(sessions: sessionmaker[Session], buyers: BenchBuyers | None, delay: float = DELAY_S,
         silent_timeout_ms: int = SILENT_TIMEOUT_MS) -> list[str]:
    """A campaign of three buyers answering after `delay` and a silent one (of
    four static targets without buyers), and keys without a practical rate limit."""
    suffix = uuidlib.uuid4().hex[:8]
    with sessions() as db:
        publisher = admin.add_publisher(db, f"bench-pass-through-{suffix}").id
        campaign = admin.add_campaign(db, f"bench-pass-through-{suffix}").id
        for n in range(ANSWERING + 1):
            admin.add_target(db, campaign, min_seconds=60,
                             **_target(buyers, n, delay, silent_timeout_ms))
        keys = [admin.add_key(db, campaign, publisher, rate_limit=100_000)[1] for _ in range(KEYS)]
        db.commit()
    return keys


def _target(buyers: BenchBuyers | None, n: int, delay: float, silent_timeout_ms: int) -> dict:
    if buyers is None:
        return {"sip_uri": f"sip:rtb{n}@127.0.0.1:9", "payout": Decimal(10 + n)}
    if n == ANSWERING:
        return {"bid_url": buyers.add("silent", never=True), "bid_timeout_ms": silent_timeout_ms}
    return {"bid_url": buyers.add(f"bid{n}", delay=delay, body={
        "bidId": f"b{n}", "bidAmount": 10 + n, "sipAddress": f"sip:rtb{n}@127.0.0.1:9",
        "expireInSeconds": 60})}


def now(engine: Engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT NOW(3)")).scalar()


def bid_outcomes(engine: Engine, since, until) -> dict[str, int]:
    """The buyers' answers between then and then: bid, no_bid, timeout, error,
    over_max, each with its reason where it has one ('error unreachable')."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, reason, COUNT(*) FROM bids"
                                 " WHERE created_at >= :since AND created_at <= :until"
                                 " GROUP BY outcome, reason"), {"since": since, "until": until}).all()
    return {f"{outcome} {reason}" if reason else outcome: count for outcome, reason, count in rows}


def measure(url: str, engine: Engine, sessions: sessionmaker[Session], workdir, seconds: int,
            progress) -> dict:
    static = pings.write_script(workdir / "static.lua", load(sessions, None), SILENT_TIMEOUT_MS,
                                CONNECTIONS)
    pings.wrk(url, static, CONNECTIONS, 2)
    pings.drained(engine)
    progress(f"pass-through floor: static targets, {CONNECTIONS} connections, {seconds} s")
    floor = pings.wrk(url, static, CONNECTIONS, seconds)
    buyers = BenchBuyers()
    try:
        script = pings.write_script(workdir / "pass-through.lua", load(sessions, buyers),
                                    SILENT_TIMEOUT_MS, CONNECTIONS)
        pings.wrk(url, script, CONNECTIONS, 2)
        pings.drained(engine)
        progress(f"pass-through: {CONNECTIONS} connections, {seconds} s")
        mark, started = pings.last_ping(engine), now(engine)
        run = pings.wrk(url, script, CONNECTIONS, seconds)
        # The answers of the run's window, counted before the buyers stop:
        # stopping them cuts the asks of the pings wrk left in flight, which
        # then count as 'error unreachable'.
        counts, bids = pings.outcomes(engine, mark), bid_outcomes(engine, started, now(engine))
    finally:
        buyers.stop()
    return {"real": run.as_dict(), "static": floor.as_dict(), "outcomes": counts, "reserved_share": pings.reserved_share(counts),
            "bids": bids, "deadline_ms": PingLimits().bid_deadline_ms,
            "connections": CONNECTIONS}


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    """The step's lines of the bench table; wrk's timed-out requests leave no
    latency, so a run with any is no p99 met."""
    real, deadline = result["real"], result["deadline_ms"]
    p99_goal = deadline + 50
    p99_met = real["p99_ms"] <= p99_goal and real["socket_errors"] == 0 and real["requests"] > 0
    return [
        (f"pass-through pings/s, {result['connections']} connections (3 buyers at 100 ms, 1 silent)",
         f"{real['rps']:,.0f} (static targets: {result['static']['rps']:,.0f})", f"≥ {GOAL_RPS}",
         "yes" if real["rps"] >= GOAL_RPS else "**no**"),
        ("pass-through ping p50 / p99 / p99.9",
         f"{real['p50_ms']:.1f} / {real['p99_ms']:.1f} / {real['p999_ms']:.1f} ms",
         f"p99 ≤ {p99_goal} ms", "yes" if p99_met else "**no**"),
        ("pass-through pings reserved; buyers' answers",
         f"{result['reserved_share']:.0%}; " + ", ".join(
             f"{k} {v}" for k, v in sorted(result["bids"].items()))
         + f" (HTTP errors {real['http_errors']}, socket errors {real['socket_errors']})", "", ""),
    ]


def main() -> int:
    from app.db import make_engine, make_sessionmaker
    from app.stack.gunicorn import Gunicorn
    from app.stack.kamailio import Kamailio
    from tests.bench.__main__ import Progress
    from tests.bench.stack import GUNICORN_START_SECONDS, BenchStack, bench_settings

    parser = argparse.ArgumentParser(prog="python -m tests.bench.passthrough", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="the wrk run (default 10)")
    args = parser.parse_args()
    progress, stack = Progress(), BenchStack(bench_settings())
    settings = stack.settings
    progress(f"{settings.http_workers} gunicorn workers x {settings.http_threads} threads")
    try:
        for state in ("mariadb", "kamailio"):
            shutil.rmtree(stack.dir / state, ignore_errors=True)
        stack.workdir.mkdir(parents=True, exist_ok=True)
        for part in (stack.database, *stack.redis, Kamailio(settings)):
            stack._start(part)
        app = stack._start(Gunicorn(settings), timeout=GUNICORN_START_SECONDS)
        engine = make_engine(settings)
        result = measure(app.url, engine, make_sessionmaker(settings, engine), stack.workdir,
                         args.seconds, progress)
        engine.dispose()
    finally:
        stack.stop()
    print("\n".join(f"| {' | '.join(row)} |" for row in rows(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
