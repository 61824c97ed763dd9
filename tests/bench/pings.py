"""Pings: wrk against POST /rtbs.json on the real app and on its two floors, in turn.

wrk's Lua picks a key, a caller number and tags per request, so the real app
sees the variety of a market (reservations, Ping Shield, auto-confirms, caps,
geo and tag rejections); the floors get the very same requests. The no-op
floor is what gunicorn and Flask cost; the durable floor adds one INSERT and
COMMIT, the least a ping that writes a reservation can cost.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

# The callers' area codes and states the pings draw from (tests/bench/ping_cpu.py draws the same).
AREAS = ("212", "213", "305", "312", "415", "512", "617", "702", "713", "206", "303", "404")
STATES = ("CA", "TX", "NY", "FL", "IL", "WA", "GA", "OH")

SCRIPT = """
local keys = %(keys)s
local areas = %(areas)s
local states = %(states)s
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%%x+)") or "0", 16))

request = function()
  local body = "key=" .. keys[math.random(#keys)]
    .. "&caller_number=" .. areas[math.random(#areas)] .. math.random(200, 999)
    .. string.format("%%04d", math.random(0, 9999)) .. "&age=" .. math.random(18, 90)
  if math.random() < 0.5 then body = body .. "&caller_state=" .. states[math.random(#states)] end
  if math.random() < 0.5 then body = body .. "&insured=" .. (math.random() < 0.5 and "yes" or "no") end
  return wrk.format("POST", "/rtbs.json", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

%(ramp)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


# wrk calls delay() before each request, a connection's first one included;
# each thread's first calls are its connections' first pings.
RAMP = """
local ramped = 0
delay = function()
  if ramped < %(first)d then
    ramped = ramped + 1
    return math.random(0, %(ms)d)
  end
  return 0
end
"""
THREADS = 2


@dataclass(frozen=True)
class WrkRun:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    http_errors: int
    socket_errors: int

    def as_dict(self) -> dict:
        return asdict(self)


def write_script(path: Path, keys: list[str], ramp_ms: int = 0, connections: int = 0) -> Path:
    """wrk's Lua for these keys. With ramp_ms, each of the connections sends its
    first ping after a random 0 to ramp_ms ms instead of all in one instant."""
    ramp = RAMP % {"first": -(-connections // THREADS), "ms": ramp_ms} if ramp_ms else ""
    path.write_text(SCRIPT % {"keys": _lua(keys), "areas": _lua(AREAS), "states": _lua(STATES),
                              "ramp": ramp})
    return path


def _lua(strings) -> str:
    return "{" + ", ".join(json.dumps(s) for s in strings) + "}"


def parse_wrk(output: str) -> WrkRun:
    """The BENCH line our done() prints: counts, and times in microseconds."""
    line = next(l for l in output.splitlines() if l.startswith("BENCH "))
    requests, duration, p50, p99, p999, status, sockets = (int(v) for v in line.split()[1:])
    return WrkRun(requests, round(requests / (duration / 1e6), 1), p50 / 1000, p99 / 1000,
                  p999 / 1000, status, sockets)


def wrk(url: str, script: Path, connections: int, seconds: int) -> WrkRun:
    done = subprocess.run(
        ["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
         "-s", str(script), f"{url}/rtbs.json"],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)


def outcomes(engine: Engine, after_id: int) -> dict[str, int]:
    """What the pings logged since after_id answered: reserved, confirmed, duplicate, rejected, error."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, COUNT(*) FROM pings WHERE id > :id GROUP BY outcome"),
                            {"id": after_id}).all()
    return {outcome: count for outcome, count in rows}


def last_ping(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM pings")).scalar()


def drained(engine: Engine, quiet: float = 0.5, most: float = 10.0) -> None:
    """Wait until no ping has been logged for `quiet` seconds (at most `most`).

    wrk stops with requests in flight; the app still answers them. A
    pass-through ping lasts 300 ms or more, so a warm-up's abandoned pings
    held every worker's slots into the first second of the run measured
    after it, and its first pings waited for them.
    """
    deadline = time.monotonic() + most
    seen = last_ping(engine)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = last_ping(engine)
        if now == seen:
            return
        seen = now


def reserved_share(counts: dict[str, int]) -> float:
    """The share of logged pings that got a dialable reservation (new or shielded)."""
    total = sum(counts.values())
    reserved = sum(counts.get(k, 0) for k in ("reserved", "confirmed", "duplicate"))
    return round(reserved / total, 4) if total else 0.0


def measure(real_url: str, floors: dict[str, str], engine: Engine, script: Path,
            connections: tuple[int, ...], seconds: int, progress) -> dict:
    """The floors (name => URL) and then the real app at each concurrency, after a
    short warm-up of each; each ratio is the real app's rate over that floor's."""
    for url in (*floors.values(), real_url):
        wrk(url, script, max(connections), 2)
    results = {}
    for conns in connections:
        measured = {}
        for name, url in floors.items():
            progress(f"pings: {name} floor, {conns} connections, {seconds} s")
            measured[name] = wrk(url, script, conns, seconds)
        progress(f"pings: real app, {conns} connections, {seconds} s")
        mark = last_ping(engine)
        real = wrk(real_url, script, conns, seconds)
        counts = outcomes(engine, mark)
        results[str(conns)] = {
            "real": real.as_dict(), "floors": {n: r.as_dict() for n, r in measured.items()},
            "ratios": {n: round(real.rps / r.rps, 3) if r.rps else 0.0 for n, r in measured.items()},
            "outcomes": counts, "reserved_share": reserved_share(counts),
        }
    return results
