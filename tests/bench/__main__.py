"""python -m tests.bench: start a private stack, measure, print the table, write bench/latest.json."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime

from app.db import make_engine, make_sessionmaker
from app.kamailio_rpc import KamailioRPC
from app.stack.process import StartError
from tests.bench import calls, data, fresh, passthrough, pings, report, scale
from tests.bench.stack import BenchStack, bench_settings

# The claim is timed at each size; pings run at the first (a fresh table) and the last.
SIZES = (1_000, 100_000, 1_000_000)
CONNECTIONS = (16, 64)


class Progress:
    """Prints each step with the time since the start, and keeps each step's duration."""

    def __init__(self):
        self.started = self.last = time.monotonic()
        self.steps: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def step(self, name: str) -> None:
        now = time.monotonic()
        self.steps[name] = round(now - self.last, 1)
        self.last = now


def machine() -> str:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def run(stack: BenchStack, args, progress: Progress) -> dict:
    settings = stack.settings
    stack.start(progress)
    progress.step("start")
    engine = make_engine(settings)
    kamailio_url = stack.database.url("kamailio")
    market = data.load_market(make_sessionmaker(settings, engine), stack.buyer.uri)
    # The app tells only its own Kamailio of new addresses; the fixed-route one reads them now.
    KamailioRPC.for_settings(stack.fixed.settings, timeout=10).call("permissions.addressReload")
    progress(f"market loaded: {len(market.keys)} keys ({market.auto_confirm} auto-confirm)")
    progress.step("data")
    result = {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "workers": settings.http_workers, "scale": {"at": {}}}
    script = pings.write_script(stack.dir / "pings.lua", market.keys)
    floors = {"noop": stack.floor.url, "durable": stack.durable_floor.url}
    result["pings"] = {}
    with engine.connect() as conn:
        # The claim at each size, and pings on the smallest and the largest
        # table; the rest then runs on a table with a long history, as an
        # operator's would have.
        for size in SIZES:
            result["scale"]["at"][f"1e{len(str(size)) - 1}"] = scale.measure_at(
                conn, kamailio_url, market, size, progress)
            progress.step(f"scale 1e{len(str(size)) - 1}")
            if size in (SIZES[0], SIZES[-1]):
                state = "fresh" if size == SIZES[0] else "history"
                result["pings"][state] = pings.measure(stack.app.url, floors, engine, script,
                                                       CONNECTIONS, args.seconds, progress)
                progress.step(f"pings {state}")
        result["scale"]["ratio"] = scale.flatness(result["scale"]["at"])
        result["pass_through"] = passthrough.measure(stack.app.url, engine,
                                                     make_sessionmaker(settings, engine),
                                                     stack.dir, args.seconds, progress)
        progress.step("pass-through")
        callers = market.callers[:-1]
        per_caller = calls.calls_needed(args.call_seconds) // len(callers) + 1
        sources = {c.ip: data.make_reservations(conn, market, c, per_caller) for c in callers}
        KamailioRPC.for_settings(settings, timeout=30).call("htable.reload", "rsv")
        result["calls"] = calls.measure(stack.workdir, stack.edge, stack.fixed_edge, sources,
                                        args.call_seconds, progress)
        progress.step("calls")
        http = (settings.http_host, settings.http_port)
        result["freshness"] = fresh.measure(http, stack.edge, settings.sip_domain,
                                            market.callers[-1], args.pairs, progress)
        progress.step("freshness")
    engine.dispose()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--call-seconds", type=int, default=5, help="each call-rate step (default 5)")
    parser.add_argument("--pairs", type=int, default=1000, help="ping-then-dial pairs (default 1000)")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both unwind through the finally below, which stops the stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    progress = Progress()
    settings = bench_settings()
    stack = BenchStack(settings)
    progress(f"bench stack in {settings.var_dir}, {settings.http_workers} gunicorn workers")
    try:
        result = run(stack, args, progress)
    except (StartError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        progress("stopping the bench stack")
        stack.stop()
    progress.step("stop")
    result["timings_s"] = progress.steps | {"total": round(time.monotonic() - progress.started, 1)}
    path = settings.var_dir / "latest.json"
    report.write_json(result, path)
    print(f"\n{report.markdown(result)}\n\nMachine: {result['machine']}. Figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
