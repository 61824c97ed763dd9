"""python -m tests.bench.cluster (`make cluster-bench`): the single stack and a
loopback cluster side by side, on this machine, in one run.

The single stack is `make bench`'s without its floors (one app node, one edge,
a private MariaDB, under $RTB_VAR_DIR/bench-cluster/single); the cluster is
`make cluster-up`'s (3 Galera nodes, 2 edges, 2 app nodes, under
$RTB_VAR_DIR/bench-cluster/cluster, on ports shifted clear of any other
cluster), its app nodes given half the single stack's workers each. Both get
the same market and the same load, step by step:

- pings: wrk at the same total connections, on the cluster split over both
  app nodes at once and summed;
- calls: the rate each holds on a short ladder, on the cluster the SIPp
  sources split over both edges at once;
- claims: rtb_confirm, as the edge runs it, from N connections at once on
  fresh reservations, on the private MariaDB and on the Galera writer. Every
  claim of the cluster goes through that one node: its claims/s is the
  ceiling of the whole cluster.

On one machine this shows what Galera's replication and a second app node
and edge cost on the same cores, not a gain: both sides share the same 2
cores, and the cluster runs more processes on them.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.settings import Settings
from app.stack.process import StartError
from tests.bench import calls, data, pings, report, scale
from tests.bench.__main__ import Progress, machine
from tests.bench.calls import Step
from tests.bench.pings import WrkRun
from tests.bench.stack import BenchStack, bench_settings
from tests.loopback_cluster import LoopbackCluster
from tests.sip import publisher_scenario

CONNECTIONS = (16, 64)
RATES = (50, 100, 150, 200)
CLAIM_CONNECTIONS = (1, 8)
CLAIMS_PER_CONNECTION = 250
# Pings and claims are measured this many times, each side in turn; the better run counts.
ROUNDS = 2
RATE = {"pings": "rps", "claims": "claims_per_s"}
CAVEAT = ("On one machine this shows what Galera's replication and a second app node and edge"
          " cost on the same cores, not a gain.")


@dataclass
class Side:
    """One side of the comparison: its app nodes, edges (and their settings, for
    RPC), the app's sessions and the Kamailio user's URL of the node that claims."""

    name: str
    urls: list[str]
    edges: list[tuple[str, int]]
    edge_settings: list[Settings]
    sessions: sessionmaker[Session]
    claim_url: URL

    @property
    def engine(self) -> Engine:
        return self.sessions.kw["bind"]

    def rpc(self, *command: str) -> None:
        for settings in self.edge_settings:
            KamailioRPC.for_settings(settings, timeout=30).call(*command)


def combine(runs: list[WrkRun]) -> WrkRun:
    """wrk runs at once against several nodes: counts and rates summed, each
    percentile the slowest node's."""
    return WrkRun(sum(r.requests for r in runs), round(sum(r.rps for r in runs), 1),
                  max(r.p50_ms for r in runs), max(r.p99_ms for r in runs),
                  max(r.p999_ms for r in runs), sum(r.http_errors for r in runs),
                  sum(r.socket_errors for r in runs))


def split(sources: dict[str, list[str]], parts: int) -> list[dict[str, list[str]]]:
    """The sources dealt round-robin over parts (the same lists: a step's use shows in sources)."""
    return [dict(list(sources.items())[n::parts]) for n in range(parts)]


def total(rate: int, steps: list[Step]) -> Step:
    """Steps run at once, one per edge, as one step at rate."""
    return Step(rate, sum(s.calls for s in steps), sum(s.failed for s in steps))


def ratio(cluster: float, single: float) -> float:
    return round(cluster / single, 3) if single else 0.0


def ping_run(side: Side, script, connections: int, seconds: int) -> dict:
    """wrk against every app node at once, the connections split between them."""
    mark = pings.last_ping(side.engine)
    each = max(connections // len(side.urls), 1)
    with ThreadPoolExecutor(len(side.urls)) as pool:
        runs = list(pool.map(lambda url: pings.wrk(url, script, each, seconds), side.urls))
    share = pings.reserved_share(pings.outcomes(side.engine, mark))
    return combine(runs).as_dict() | {"nodes": [r.as_dict() for r in runs], "reserved_share": share}


def call_step(workdir, side: Side, sources: dict[str, list[str]], rate: int, seconds: int) -> Step:
    """rate calls/s for seconds, the sources split over every edge at once."""
    parts = split(sources, len(side.edges))
    with ThreadPoolExecutor(len(parts)) as pool:
        steps = list(pool.map(
            lambda edge, part: calls.run_step(workdir, edge, part, rate * len(part) / len(sources),
                                              seconds), side.edges, parts))
    return total(rate, steps)


def claim_run(side: Side, caller: data.Caller, uuids: list[str], connections: int) -> dict:
    """Every uuid claimed once, from connections at once."""
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        done = list(pool.map(lambda n: scale.time_claims(side.claim_url, caller, uuids[n::connections]),
                             range(connections)))
    seconds = time.perf_counter() - started
    took = [ms for times, _ in done for ms in times]
    return {"claims_per_s": round(len(took) / seconds, 1), "claim_ms": report.distribution(took),
            "deadlocks": sum(deadlocks for _, deadlocks in done)}


def measure(sides: list[Side], buyer_uri: str, workdir, args, progress) -> dict:
    # The app's sessions tell every edge of the callers' addresses.
    markets = {side.name: data.load_market(side.sessions, buyer_uri) for side in sides}
    for side in sides:
        script = pings.write_script(workdir / f"pings-{side.name}.lua", markets[side.name].keys)
        for url in side.urls:
            pings.wrk(url, script, max(CONNECTIONS), 2)
    progress.step("market")
    # Pings and claims: each side in turn, ROUNDS times; on a shared machine
    # the better run is the one other load disturbed least.
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(ROUNDS):
        for conns in CONNECTIONS:
            for side in sides:
                progress(f"pings: {side.name}, {conns} connections, {args.seconds} s")
                runs.setdefault((side.name, "pings", str(conns)), []).append(
                    ping_run(side, workdir / f"pings-{side.name}.lua", conns, args.seconds))
    progress.step("pings")
    steps = call_ladder(sides, markets, workdir, args.call_seconds, progress)
    progress.step("calls")
    for _ in range(ROUNDS):
        for conns in CLAIM_CONNECTIONS:
            for side in sides:
                caller = markets[side.name].callers[-1]
                with side.engine.connect() as conn:
                    uuids = data.make_reservations(conn, markets[side.name], caller,
                                                   conns * CLAIMS_PER_CONNECTION)
                progress(f"claims: {side.name}, {len(uuids)} from {conns} connections")
                runs.setdefault((side.name, "claims", str(conns)), []).append(
                    claim_run(side, caller, uuids, conns))
    progress.step("claims")
    result = {side.name: {"pings": {}, "claims": {}, "calls": {
        "rate": calls.highest_held(steps[side.name]),
        "steps": [vars(s) | {"held": s.held} for s in steps[side.name]]}} for side in sides}
    for (name, step, conns), tries in runs.items():
        result[name][step][conns] = best(tries, RATE[step])
    return result


def call_ladder(sides: list[Side], markets: dict[str, data.Market], workdir, seconds: int,
                progress) -> dict[str, list[Step]]:
    """Both sides at each rate, in turn, until each fails a step (tried twice)."""
    feeds = {}
    for side in sides:
        callers = markets[side.name].callers[:-1]
        per_caller = sum(RATES) * seconds * calls.TRIES // len(callers) + 1
        with side.engine.connect() as conn:
            feeds[side.name] = {c.ip: data.make_reservations(conn, markets[side.name], c, per_caller)
                                for c in callers}
        side.rpc("htable.reload", "rsv")
    (workdir / "publisher-call.xml").write_text(publisher_scenario(hold_ms=calls.HOLD_MS))
    steps: dict[str, list[Step]] = {side.name: [] for side in sides}
    for below, rate in zip((0, *RATES), RATES):
        for side in (s for s in sides if calls.highest_held(steps[s.name]) == below):
            for _ in range(calls.TRIES):
                step = call_step(workdir, side, feeds[side.name], rate, seconds)
                steps[side.name].append(step)
                progress(f"calls: {side.name} at {rate}/s: {step.failed} of {step.calls} failed")
                if step.held:
                    break
    return steps


def best(runs: list[dict], rate: str) -> dict:
    """The run with the highest rate, with every run's rate beside it."""
    return max(runs, key=lambda r: r[rate]) | {"runs": [r[rate] for r in runs]}


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(figure, single, cluster, cluster ÷ single)."""
    single, cluster = result["single"], result["cluster"]
    out = []
    for conns in single["pings"]:
        one, two = single["pings"][conns], cluster["pings"][conns]
        out.append((f"pings/s, {conns} connections, the better of {len(one['runs'])} runs",
                    f"{one['rps']:,.0f}", f"{two['rps']:,.0f}", f"{ratio(two['rps'], one['rps']):.2f}"))
        out.append((f"ping p50 / p99, {conns} connections (cluster: the slower node's)",
                    f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms",
                    f"{two['p50_ms']:.1f} / {two['p99_ms']:.1f} ms",
                    f"{ratio(two['p99_ms'], one['p99_ms']):.2f} (p99)"))
    ladder = "/".join(str(r) for r in RATES)
    out.append((f"calls/s held (ladder {ladder}, {result['call_seconds']} s a step)",
                str(single["calls"]["rate"]), str(cluster["calls"]["rate"]),
                f"{ratio(cluster['calls']['rate'], single['calls']['rate']):.2f}"))
    for rate in sorted({s["rate"] for side in (single, cluster) for s in side["calls"]["steps"]}):
        one, two = (connected(side["calls"]["steps"], rate) for side in (single, cluster))
        out.append((f"calls connected at {rate}/s (the better of its tries)", _share(one),
                    _share(two), f"{ratio(_rate(two), _rate(one)):.2f}" if one and two else ""))
    for conns in single["claims"]:
        one, two = single["claims"][conns], cluster["claims"][conns]
        out.append((f"claims/s (rtb_confirm), {_connections(conns)}, the better of {len(one['runs'])} runs",
                    f"{one['claims_per_s']:,.0f}", f"{two['claims_per_s']:,.0f}",
                    f"{ratio(two['claims_per_s'], one['claims_per_s']):.2f}"))
        out.append((f"claim p50 / p99, {_connections(conns)} (deadlocks)",
                    f"{one['claim_ms']['p50']:.2f} / {one['claim_ms']['p99']:.2f} ms ({one['deadlocks']})",
                    f"{two['claim_ms']['p50']:.2f} / {two['claim_ms']['p99']:.2f} ms ({two['deadlocks']})",
                    f"{ratio(two['claim_ms']['p50'], one['claim_ms']['p50']):.2f} (p50)"))
    return out


def connected(steps: list[dict], rate: int) -> tuple[int, int] | None:
    """(connected, dialled) of the try at rate that connected the most; None if not run."""
    tries = [(s["calls"] - s["failed"], s["calls"]) for s in steps if s["rate"] == rate]
    return max(tries) if tries else None


def _connections(count: str) -> str:
    return "1 connection" if count == "1" else f"{count} connections"


def _share(pair: tuple[int, int] | None) -> str:
    return f"{pair[0]} of {pair[1]}" if pair else "not run"


def _rate(pair: tuple[int, int] | None) -> float:
    return pair[0] / pair[1] if pair and pair[1] else 0.0


def markdown(result: dict) -> str:
    lines = ["| figure | single stack | cluster (2 apps, 2 edges, 3 Galera) | cluster ÷ single |",
             "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows(result)])


def run(stack: BenchStack, running: ExitStack, args, progress: Progress) -> dict:
    """Both sides started (and their stops pushed on running), measured."""
    running.callback(stack.stop)
    stack.start(progress, floors=False)
    progress.step("start single")
    # Its ports are chosen now, clear of the single stack's, which are bound.
    cluster = LoopbackCluster(stack.dir.parent,
                              RTB_HTTP_WORKERS=str(max(stack.settings.http_workers // 2, 1)))
    running.callback(cluster.stop)
    running.callback(progress, "stopping the single stack and the cluster")
    progress(f"starting the cluster in {cluster.nodes.dir}")
    cluster.up()
    progress.step("start cluster")
    settings = stack.settings
    single = Side("single", [stack.app.url], [stack.edge], [settings],
                  make_sessionmaker(settings, make_engine(settings)), stack.database.url("kamailio"))
    writer = cluster.writer()
    both = Side("cluster", [app.url for app in cluster.apps], cluster.edges,
                [edge.settings for edge in cluster.nodes.edges()], cluster.sessions,
                writer.url("kamailio"))
    try:
        result = measure([single, both], stack.buyer.uri, stack.workdir, args, progress)
    finally:
        single.engine.dispose()
    return result | {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "workers": {"single": settings.http_workers,
                                 "cluster_per_node": cluster.settings.http_workers},
                     "call_seconds": args.call_seconds, "caveat": CAVEAT}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--call-seconds", type=int, default=10, help="each call-rate step (default 10)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    progress = Progress()
    settings = bench_settings("bench-cluster/single")
    base = settings.var_dir.parent
    # A fresh cluster each run, as the single stack's database is.
    shutil.rmtree(base / "cluster", ignore_errors=True)
    progress(f"cluster bench in {base}. {CAVEAT}")
    try:
        # Whatever happens, Ctrl-C too, what was started is stopped, the cluster first.
        with ExitStack() as running:
            result = run(BenchStack(settings), running, args, progress)
    except (StartError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    progress.step("stop")
    result["timings_s"] = progress.steps | {"total": round(time.monotonic() - progress.started, 1)}
    path = base / "latest.json"
    report.write_json(result, path)
    print(f"\n{markdown(result)}\n\n{CAVEAT}\nMachine: {result['machine']}. Figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
