"""Calls: SIPp publishers dialling through an edge at stepped call rates.

Each step runs one SIPp UAC per caller address (the load is split between
them, so no one source floods the edge), for a fixed number of seconds. The
real edge dials fresh reservations, one per call; the fixed-route edge
relays the same kind of INVITEs without lookup or claim.
"""

from __future__ import annotations

import subprocess
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from app.stack.demo.sipp import free_media_port
from tests.sip import free_port, publisher_scenario, screen_count

RATES = (100, 200, 300, 400, 600, 800, 1000, 1200, 1600)
FAILED_MAX = 0.001
# The machine is shared: a step that fails is tried once more before the edge is done.
TRIES = 2
HOLD_MS = 100


@dataclass(frozen=True)
class Step:
    rate: int
    calls: int
    failed: int

    @property
    def held(self) -> bool:
        return self.calls > 0 and self.failed / self.calls < FAILED_MAX


def rate_held(steps: list[Step], rate: int) -> bool:
    """A rate is held when one of its tries failed under 0.1 % of its calls."""
    return any(s.held for s in steps if s.rate == rate)


def highest_held(steps: list[Step]) -> int:
    """The highest rate below the first one not held (0 if the lowest was not)."""
    held = 0
    for rate in sorted({s.rate for s in steps}):
        if not rate_held(steps, rate):
            break
        held = rate
    return held


def _sipp(workdir: Path, edge: tuple[str, int], ip: str, uuids: list[str], rate: float,
          seconds: int) -> subprocess.Popen:
    injection = workdir / f"calls-{ip}-{free_port()}.csv"
    injection.write_text("SEQUENTIAL\n" + "".join(f"{u};;\n" for u in uuids))
    scenario = workdir / "publisher-call.xml"
    if not scenario.exists():
        scenario.write_text(publisher_scenario(hold_ms=HOLD_MS))
    return subprocess.Popen(
        ["sipp", f"{edge[0]}:{edge[1]}", "-sf", str(scenario), "-inf", str(injection),
         "-key", "domain", edge[0], "-i", ip, "-p", str(free_port(ip)),
         "-mp", str(free_media_port(ip)), "-m", str(len(uuids)), "-r", f"{rate:g}",
         "-timeout", f"{seconds + 30}s", "-nostdin", "-max_retrans", "3",
         # Answer the edge's keepalives (OPTIONS within the call), and ignore a
         # 180 that comes after the 200 rather than abort the call, as a phone
         # does: the edge's children relay the two in parallel, and when the
         # 200 costs the edge no more than the 180 (the fixed route records no
         # answer), it often overtakes it.
         "-aa", "-default_behaviors", "all,-abortunexp",
         "-trace_err", "-error_file", str(workdir / f"errors-{ip}.log")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=workdir)


def run_step(workdir: Path, edge: tuple[str, int], sources: dict[str, list[str]], rate: int,
             seconds: int) -> Step:
    """rate calls/s for seconds, split over the sources; sources[ip] is that caller's uuids."""
    per_source = rate / len(sources)
    count = round(per_source * seconds)
    procs = [_sipp(workdir, edge, ip, uuids[:count], per_source, seconds)
             for ip, uuids in sources.items()]
    successful = 0
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            # SIPp has been seen to outlive its -timeout on a busy machine;
            # what it had not finished by now counts as failed.
            proc.kill()
            out, _ = proc.communicate()
        successful += screen_count("Successful call", out)
    for uuids in sources.values():
        del uuids[:count]
    calls = count * len(procs)
    return Step(rate, calls, calls - successful)


def any_uuids(count: int) -> list[str]:
    return [str(uuidlib.uuid4()) for _ in range(count)]


def calls_needed(seconds: int) -> int:
    return sum(RATES) * seconds * TRIES


def measure(workdir: Path, real: tuple[str, int], fixed: tuple[str, int],
            sources: dict[str, list[str]], seconds: int, progress) -> dict:
    """Both edges at each rate, one after the other, until each fails a step."""
    steps: dict[str, list[Step]] = {"real": [], "fixed": []}
    done: set[str] = set()
    for rate in RATES:
        for name, edge in (("fixed", fixed), ("real", real)):
            for _ in range(TRIES if name not in done else 0):
                feed = sources if name == "real" else {ip: any_uuids(rate * seconds) for ip in sources}
                step = run_step(workdir, edge, feed, rate, seconds)
                steps[name].append(step)
                progress(f"calls: {name} edge at {rate}/s: {step.failed} of {step.calls} failed")
                if step.held:
                    break
            if not rate_held(steps[name], rate):
                done.add(name)
        if len(done) == len(steps):
            break
    held = {name: highest_held(s) for name, s in steps.items()}
    return {
        "steps": {name: [vars(s) | {"held": s.held} for s in ss] for name, ss in steps.items()},
        "real_rate": held["real"], "fixed_rate": held["fixed"],
        "ratio": round(held["real"] / held["fixed"], 3) if held["fixed"] else 0.0,
    }
