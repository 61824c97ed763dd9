"""The app's own CPU per pass-through ping, in one thread: create_app()'s test
client posts the pass-through step's pings (wrk's mix of keys, callers and
tags) to four live buyers, three answering at once and one never (its
timeout 20 ms), against a real MariaDB and Kamailio.

The pass-through step's figures move by a fifth within an hour on a shared
machine, with everything on two cores at once. The CPU time of one thread
doing the app's work alone moves by a few percent, and MariaDB's beside it
(its CPU over the same pings), so a change to the ping path can be weighed
here in a minute; --profile prints cProfile's view of it instead.

    python -m tests.bench.ping_cpu [--pings 800] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import sys
import time
from pathlib import Path

from app import create_app
from app.db import make_engine, make_sessionmaker
from app.stack.kamailio import Kamailio
from tests.bench.buyers import BenchBuyers
from tests.bench.passthrough import load
from tests.bench.pings import AREAS, STATES
from tests.bench.stack import BenchStack, bench_settings

SILENT_TIMEOUT_MS = 20


def ping_form(keys: list[str], rng: random.Random) -> dict[str, str]:
    """What tests/bench/pings.py's wrk script posts."""
    form = {"key": rng.choice(keys),
            "caller_number": f"{rng.choice(AREAS)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}",
            "age": str(rng.randint(18, 90))}
    if rng.random() < 0.5:
        form["caller_state"] = rng.choice(STATES)
    if rng.random() < 0.5:
        form["insured"] = rng.choice(("yes", "no"))
    return form


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ping_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=800, help="pings a round (default 800)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print cProfile's view instead")
    args = parser.parse_args()
    stack, buyers = BenchStack(bench_settings("ping-cpu")), BenchBuyers()
    try:
        for state in ("mariadb", "kamailio"):
            shutil.rmtree(stack.dir / state, ignore_errors=True)
        for part in (stack.database, *stack.redis, Kamailio(stack.settings)):
            stack._start(part)
        keys = load(make_sessionmaker(stack.settings, make_engine(stack.settings)), buyers,
                    delay=0.0, silent_timeout_ms=SILENT_TIMEOUT_MS)
        client, rng = create_app(stack.settings).test_client(), random.Random(1)

        def run(pings: int) -> None:
            for _ in range(pings):
                answer = client.post("/rtbs.json", data=ping_form(keys, rng))
                if answer.get_json()["rtb"].get("status") != "reserved":
                    raise RuntimeError(f"a ping was not reserved: {answer.get_json()}")

        run(200)
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            profile.runcall(run, args.pings)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(60)
            return 0
        database = stack.database.service.pid()
        for _ in range(args.rounds):
            thread, db = time.thread_time(), cpu_seconds(database)
            run(args.pings)
            print(f"per ping: app {(time.thread_time() - thread) / args.pings * 1000:.2f} ms, "
                  f"MariaDB {(cpu_seconds(database) - db) / args.pings * 1000:.2f} ms", flush=True)
    finally:
        buyers.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
