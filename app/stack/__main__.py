"""python -m app.stack {run,up,down}: the parts, started in order.

run   starts everything and stays in the foreground until Ctrl-C
up    starts everything in the background, returns once all parts answer
down  stops what up started; the data stays
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from app.database_urls import database_url, edges
from app.settings import ROLES, Settings, SettingsError
from app.stack.gunicorn import Gunicorn
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB, upgrade_schema
from app.stack.metrics import MetricsExporter
from app.stack.postbacks import PostbackWorker
from app.stack.process import StartError
from app.stack.redis import redis_parts


def parts(settings: Settings) -> list:
    """The parts of the roles this machine runs (RTB_ROLES), in starting order."""
    roles = settings.roles
    database = [PrivateMariaDB(settings)] if "db" in roles and settings.private_database else []
    edge = [*redis_parts(settings), Kamailio(settings)] if "edge" in roles else []
    app = ([Gunicorn(settings), MetricsExporter(settings), PostbackWorker(settings)]
           if "app" in roles else [])
    return [*database, *edge, *app]


def up(settings: Settings) -> list:
    started = []
    # A server of the operator's gets our schema before an edge or the app uses it.
    upgraded = settings.private_database
    try:
        for part in parts(settings):
            if not upgraded and not isinstance(part, PrivateMariaDB):
                upgrade_schema(database_url(settings))
                upgraded = True
            part.start()
            started.append(part)
    except (StartError, RuntimeError):
        for part in reversed(started):
            part.stop()
        raise
    return started


def down(settings: Settings) -> None:
    for part in reversed(parts(settings)):
        part.stop()


def banner(settings: Settings) -> str:
    if settings.roles != set(ROLES):
        return roles_banner(settings)
    sip = f"{settings.sip_addr}:{settings.sip_port}"
    return f"""
RTB router is up (state in {settings.var_dir}).
  HTTP API  http://{settings.http_host}:{settings.http_port}   SIP edge  {sip} (udp, tcp)
  Metrics   http://{settings.metrics_host}:{settings.metrics_port}/metrics (app)
            http://127.0.0.1:{settings.rpc_port}/metrics (Kamailio)

Set up a buyer and a publisher, then ping:
  .venv/bin/rtbctl publisher add acme
  .venv/bin/rtbctl publisher allow-ip 1 127.0.0.2/32
  .venv/bin/rtbctl campaign add solar
  .venv/bin/rtbctl target add 1 --sip-uri sip:buyer@127.0.0.1:5090 --payout 12.5 --min-seconds 60
  .venv/bin/rtbctl key add 1 1
  curl -s -X POST 'http://{settings.http_host}:{settings.http_port}/rtbs.json?key=KEY&caller_number=2025550123'

Dial the reservation's sip_address (<uuid>@{settings.sip_domain}) through {sip} from
127.0.0.2, e.g. with a SIPp scenario that follows Record-Route (README: "A first call").
Call ends are posted to keys' postback URLs by the postback worker (README: "Conversion postbacks").
Logs: {settings.var_dir}/*/*.log
"""


def roles_banner(settings: Settings) -> str:
    """What a machine running some of the roles runs, and where."""
    lines = [f"RTB router: roles {', '.join(r for r in ROLES if r in settings.roles)} "
             f"(state in {settings.var_dir})."]
    if "db" in settings.roles:
        lines.append(f"  Database  private MariaDB on 127.0.0.1:{settings.db_port}"
                     if settings.private_database else
                     "  Database  none started: RTB_DATABASE_URL(S) names the servers")
    if "edge" in settings.roles:
        lines.append(f"  SIP edge  {settings.sip_addr}:{settings.sip_port} (udp, tcp), "
                     f"JSON-RPC and metrics http://127.0.0.1:{settings.rpc_port}")
    if "app" in settings.roles:
        lines.append(f"  HTTP API  http://{settings.http_host}:{settings.http_port}, metrics "
                     f"http://{settings.metrics_host}:{settings.metrics_port}/metrics, "
                     "postback worker; pushes to " + ", ".join(edges(settings)))
    lines.append(f"Logs: {settings.var_dir}/*/*.log")
    return "\n" + "\n".join(lines) + "\n"


def run(settings: Settings) -> int:
    started = up(settings)
    print(banner(settings), flush=True)
    stopping = []
    # Set both explicitly: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        while not stopping:
            dead = [p.service.name for p in started if not p.service.alive()]
            if dead:
                print(f"{', '.join(dead)} stopped unexpectedly; shutting down", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        print("stopping …", flush=True)
        # These hold the Popen handles, so each exited child is reaped at once.
        for part in reversed(started):
            part.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m app.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "up", "down"])
    command = parser.parse_args().command
    try:
        settings = Settings.from_env()
        if command == "down":
            down(settings)
            return 0
        if command == "up":
            up(settings)
            print(banner(settings))
            return 0
        return run(settings)
    except (SettingsError, StartError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
