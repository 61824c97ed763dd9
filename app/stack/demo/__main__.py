"""python -m app.stack.demo: `make run` with a demo market and live traffic.

Starts the whole stack in $RTB_VAR_DIR/demo on the demo's own ports, seeds a
demo market, prints the key and the URLs, then every couple of seconds pings
over HTTP and dials the answered sip_address through the edge. Ctrl-C stops
everything; --for-seconds stops the traffic by itself, lets the last calls
end and stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from app.db import make_sessionmaker
from app.settings import Settings, SettingsError
from app.stack.__main__ import up
from app.stack.demo import market, sipp
from app.stack.demo.environment import demo_env
from app.stack.demo.traffic import Traffic
from app.stack.process import StartError

INTERVAL_S = 2.0


def banner(settings: Settings, key: str) -> str:
    http = f"http://{settings.http_host}:{settings.http_port}"
    env = f"RTB_VAR_DIR={settings.var_dir} RTB_DB_PORT={settings.db_port}"
    return f"""
RTB demo is up (state in {settings.var_dir}).
  Key       {key}
  Ping      curl -s -X POST '{http}/rtbs.json?key={key}&caller_number=2025550123'
  SIP edge  {settings.sip_addr}:{settings.sip_port}, the publisher calls from {market.PUBLISHER_IP}
  Metrics   http://{settings.metrics_host}:{settings.metrics_port}/metrics (app)
            http://127.0.0.1:{settings.rpc_port}/metrics (Kamailio)
  Web page  {http}/admin/ (an operator first: {env} .venv/bin/rtbctl operator add NAME)
  Look      {env} .venv/bin/rtbctl report --since 1h
            {env} .venv/bin/rtbctl reservations --limit 5

A ping and a call every {INTERVAL_S:g} s; each buyer hangs up after {sipp.TALK_MS // 1000} s.
Ctrl-C stops.
"""


def traffic(settings: Settings, key: str, seconds: float | None, started: list) -> int:
    """Ping and dial until Ctrl-C, or for `seconds` and then until the last calls end."""
    stopping = []
    # Set both explicitly: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    calls = Traffic(settings, key, settings.var_dir / "sipp")
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stopping and (deadline is None or time.monotonic() < deadline):
            dead = [p.service.name for p in started if not p.service.alive()]
            if dead:
                print(f"{', '.join(dead)} stopped unexpectedly; shutting down", file=sys.stderr)
                return 1
            print(calls.step(), flush=True)
            next_step = time.monotonic() + INTERVAL_S
            while not stopping and time.monotonic() < next_step:
                time.sleep(0.1)
        if not stopping:
            calls.wait(sipp.TALK_MS / 1000 + 5)
    finally:
        calls.stop()
    return 0


def run(settings: Settings, seconds: float | None) -> int:
    (settings.var_dir / "sipp").mkdir(parents=True, exist_ok=True)
    started = up(settings)
    buyers: list[subprocess.Popen] = []
    sessions = make_sessionmaker(settings)
    try:
        uris = []
        for _ in market.BUYERS:
            proc, uri = sipp.start_buyer(settings.var_dir / "sipp")
            buyers.append(proc)
            uris.append(uri)
        with sessions() as db:
            key = market.seed(db, uris, settings.var_dir / "demo-key")
        print(banner(settings, key), flush=True)
        return traffic(settings, key, seconds, started)
    finally:
        print("stopping …", flush=True)
        sipp.stop(buyers)
        sessions.kw["bind"].dispose()
        for part in reversed(started):
            part.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m app.stack.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--for-seconds", type=float, metavar="N",
                        help="send traffic for N seconds, then stop (default: until Ctrl-C)")
    seconds = parser.parse_args().for_seconds
    try:
        env = demo_env(os.environ)
        settings = Settings.from_env(env)
        # The parts (gunicorn's workers among them) read their settings from it.
        os.environ.clear()
        os.environ.update(env)
        return run(settings, seconds)
    except (SettingsError, StartError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
