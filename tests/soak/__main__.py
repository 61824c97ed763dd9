"""python -m tests.soak (`make soak`): a steady mix of pings, confirms and
calls against an instance of its own, with Kamailio restarted halfway.
Prints the totals and ends with one line for scripts:

  soak: pings=N reservations=N calls=N completed=N lost=0 double_claims=0 overbooked=0
        errors_5xx=0 counter_drift=0

and exits 1 when any of the last five is not zero. README: "Soak".
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time

from app.settings import Settings
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


def load(stack: PrivateStack, seconds: float) -> Record:
    workdir = stack.settings.var_dir / "sip"
    workdir.mkdir(parents=True, exist_ok=True)
    buyers = [Buyer(workdir, calls=100000, timeout=int(seconds) + 120) for _ in CAPS]
    try:
        market = stack.market([{**caps, "sip_uri": b.uri} for caps, b in zip(CAPS, buyers)],
                              ttl=10)
        record, halt = Record(), threading.Event()
        clients = [Sampler(stack, record, halt),
                   *(Publisher(stack, record, halt, market.key) for _ in range(PUBLISHERS)),
                   *(Caller(stack, record, halt, workdir / f"caller{n}", market.ip)
                     for n in range(CALLERS))]
        for client in clients:
            client.start()
        time.sleep(seconds / 2)
        print("soak: restarting Kamailio", flush=True)
        stack.kamailio.stop()
        stack.kamailio.start()
        time.sleep(seconds / 2)
        halt.set()
        for client in clients:
            client.join(90)
        return record
    finally:
        for b in buyers:
            b.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90, help="how long the load runs")
    seconds = parser.parse_args().seconds
    var_dir = Settings.from_env().var_dir / "soak"
    shutil.rmtree(var_dir, ignore_errors=True)
    stack = PrivateStack(var_dir, workers=2)
    print(f"soak: starting a private stack in {var_dir}", flush=True)
    stack.start()
    try:
        print(f"soak: {seconds:.0f} s of pings, confirms and calls", flush=True)
        record = load(stack, seconds)
        counts = totals(stack, record)
    finally:
        stack.stop()
    print(report(counts, record))
    return 1 if any(counts[name] for name in MUST_BE_ZERO) else 0


if __name__ == "__main__":
    sys.exit(main())
