"""python -m tests.soak (`make soak`): a steady mix of pings, confirms and
calls against an instance of its own, with Kamailio restarted halfway; with
--cluster (`make cluster-soak`), against a cluster of its own, spread over its
app nodes and edges, with the writer killed and an edge restarted halfway.
Prints the totals and ends with one line for scripts:

  soak: pings=N reservations=N calls=N completed=N lost=0 double_claims=0 overbooked=0
        errors_5xx=0 counter_drift=0

and exits 1 when any of the last five is not zero. README: "Soak".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.settings import Settings
from tests.loopback_cluster import HANG_SECONDS, LoopbackCluster
from tests.private_stack import PrivateStack
from tests.sip import Buyer
from tests.soak.counters import MUST_BE_ZERO, report, totals
from tests.soak.load import Caller, Publisher, Record, Sampler

PUBLISHERS = 3
CALLERS = 3
# The best-paid buyer takes 2 calls at once, the next 60 an hour; the last
# takes everything, so that no ping goes unanswered.
CAPS = [{"payout": "20", "concurrency_cap": 2}, {"payout": "15", "hourly_cap": 60},
        {"payout": "10"}]


def load(stack: PrivateStack | LoopbackCluster, seconds: float, disrupt: Callable[[], None],
         record: Record) -> Record:
    """seconds of load, disrupt() run halfway."""
    workdir = stack.settings.var_dir / "sip"
    workdir.mkdir(parents=True, exist_ok=True)
    buyers = [Buyer(workdir, calls=100000, timeout=int(seconds) + 120) for _ in CAPS]
    try:
        market = stack.market([{**caps, "sip_uri": b.uri} for caps, b in zip(CAPS, buyers)],
                              ttl=10)
        halt = threading.Event()
        clients = [Sampler(stack, record, halt),
                   *(Publisher(stack, record, halt, market.key) for _ in range(PUBLISHERS)),
                   *(Caller(stack, record, halt, workdir / f"caller{n}", market.ip)
                     for n in range(CALLERS))]
        for client in clients:
            client.start()
        time.sleep(seconds / 2)
        disrupt()
        time.sleep(seconds / 2)
        halt.set()
        for client in clients:
            client.join(90)
        return record
    finally:
        for b in buyers:
            b.stop()


def private_stack(var_dir: Path) -> tuple[PrivateStack, Callable[[], None], Record]:
    """One instance; Kamailio restarted halfway."""
    stack = PrivateStack(var_dir, workers=2).start()

    def restart_kamailio() -> None:
        print("soak: restarting Kamailio", flush=True)
        stack.kamailio.stop()
        stack.kamailio.start()

    return stack, restart_kamailio, Record()


def loopback_cluster(var_dir: Path) -> tuple[LoopbackCluster, Callable[[], None], Record]:
    """The cluster of `make cluster-up`; halfway its writer is killed, and while
    the next node writes, an edge is stopped; `up` brings both back. A 503
    while the writer changes is not an error; a hang of 10 s is."""
    cluster = LoopbackCluster(var_dir).up()

    def lose_writer_and_edge() -> None:
        print("soak: killing the writer", flush=True)
        os.kill(cluster.writer().service.pid(), signal.SIGKILL)
        time.sleep(HANG_SECONDS)
        print("soak: stopping edge 2, then cluster up", flush=True)
        cluster.nodes.edges()[1].parts[-1].stop()
        cluster.up()

    return cluster, lose_writer_and_edge, Record(tolerated=frozenset({503}))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90, help="how long the load runs")
    parser.add_argument("--cluster", action="store_true",
                        help="on the cluster of `make cluster-up` (`make cluster-soak`)")
    args = parser.parse_args()
    var_dir = Settings.from_env().var_dir / ("cluster-soak" if args.cluster else "soak")
    shutil.rmtree(var_dir, ignore_errors=True)
    print(f"soak: starting {'a cluster' if args.cluster else 'a private stack'} in {var_dir}",
          flush=True)
    stack, disrupt, record = (loopback_cluster if args.cluster else private_stack)(var_dir)
    try:
        print(f"soak: {args.seconds:.0f} s of pings, confirms and calls", flush=True)
        load(stack, args.seconds, disrupt, record)
        counts = totals(stack, record)
    finally:
        stack.stop()
    print(report(counts, record))
    return 1 if any(counts[name] for name in MUST_BE_ZERO) else 0


if __name__ == "__main__":
    sys.exit(main())
