"""The benchmark's own stack under $RTB_VAR_DIR/bench, on free ports, started as `make run` does.

Beside the real parts it runs their floors: the same gunicorn serving a
no-op app and a durable one (one INSERT and COMMIT a request), and a second
Kamailio on the same cfg with FIXED_ROUTE set.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket

from app.settings import Settings
from app.stack.gunicorn import Gunicorn
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from app.stack.redis import private_url, redis_parts
from tests.sip import Buyer, free_port, free_sip_port

FLOOR_APP = "tests.bench.floor:create_app()"
DURABLE_FLOOR_APP = "tests.bench.floor:create_durable_app()"
# Each real worker loads the ZIP and area-code tables at start (over a CPU
# second each): on a busy machine, beside two Kamailios, that takes over 30 s.
GUNICORN_START_SECONDS = 120
# What the environment may not choose for the bench: it never uses an
# operator's database, ports or state.
NOT_INHERITED = ("RTB_DATABASE_URL", "RTB_KAMAILIO_DATABASE_URL", "RTB_HTTP_PORT", "RTB_SIP_PORT",
                 "RTB_RPC_PORT", "RTB_DB_PORT", "RTB_HTTP_HOST", "RTB_SIP_ADDR", "RTB_SIP_DOMAIN",
                 "RTB_REDIS_URL", "RTB_REDIS_PORT", "RTB_DATABASE_URLS", "RTB_KAMAILIO_DATABASE_URLS",
                 "RTB_EDGES", "RTB_ROLES", "RTB_CLUSTER_PORT_OFFSET")


def free_tcp_port() -> int:
    return free_port(kind=socket.SOCK_STREAM)


def bench_settings(folder: str = "bench") -> Settings:
    """The operator's settings (workers, cfg) with a state folder and ports of the bench's own.

    They are put in this process's environment too: gunicorn's workers read
    their settings from it, exactly as under `make run`.
    """
    for name in NOT_INHERITED:
        os.environ.pop(name, None)
    base = Settings.from_env().var_dir
    os.environ.update({
        "RTB_VAR_DIR": str(base / folder),
        "RTB_HTTP_PORT": str(free_tcp_port()),
        "RTB_SIP_PORT": str(free_sip_port()),
        "RTB_RPC_PORT": str(free_tcp_port()),
        "RTB_DB_PORT": str(free_tcp_port()),
        "RTB_REDIS_PORT": str(free_tcp_port()),
    })
    return Settings.from_env()


class BenchStack:
    """Every part the bench measures; stop() stops what start() got to."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.var_dir
        self.database = PrivateMariaDB(settings)
        self.redis = redis_parts(settings)
        self.workdir = self.dir / "sipp"
        self.started: list = []
        self.buyer: Buyer | None = None

    def start(self, progress, floors: bool = True) -> None:
        """With floors False, only the real parts: MariaDB, Redis, Kamailio, gunicorn."""
        # A fresh database each run: the figures must not depend on the last run's rows.
        for state in ("mariadb", "kamailio", "fixed"):
            shutil.rmtree(self.dir / state, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        progress("starting MariaDB")
        self._start(self.database)
        for part in self.redis:
            self._start(part)
        self.buyer = Buyer(self.workdir, calls=10_000_000, scenario="buyer_rings.xml", timeout=3600,
                           trace=False)
        progress("starting Kamailio and gunicorn" + (" and their floors" if floors else ""))
        self._start(Kamailio(self.settings))
        self.app = self._start(Gunicorn(self.settings), timeout=GUNICORN_START_SECONDS)
        if not floors:
            return
        self.fixed = self._fixed_route()
        self._start(self.fixed)
        self.floor = self._start(Gunicorn(self._beside("floor", http_port=free_tcp_port()),
                                          FLOOR_APP), timeout=GUNICORN_START_SECONDS)
        self.durable_floor = self._start(Gunicorn(
            self._beside("durable-floor", http_port=free_tcp_port()), DURABLE_FLOOR_APP),
            timeout=GUNICORN_START_SECONDS)

    def _start(self, part, **start):
        part.start(**start)
        self.started.append(part)
        return part

    def _beside(self, name: str, **changes) -> Settings:
        return dataclasses.replace(self.settings, var_dir=self.dir / name, **changes)

    def _fixed_route(self) -> Kamailio:
        """A second Kamailio on the same cfg, database and Redis (its own Redis
        database there), relaying straight to the buyer."""
        kamailio_url = self.database.url("kamailio").render_as_string(hide_password=False)
        redis = private_url(self.settings, db=1) if self.redis else None
        settings = self._beside("fixed", sip_port=free_sip_port(), rpc_port=free_tcp_port(),
                                kamailio_database_url_override=kamailio_url,
                                redis_url_override=redis)
        return Kamailio(settings, ("-A", f'FIXED_ROUTE="{self.buyer.uri}"'))

    @property
    def edge(self) -> tuple[str, int]:
        return (self.settings.sip_addr, self.settings.sip_port)

    @property
    def fixed_edge(self) -> tuple[str, int]:
        return (self.fixed.settings.sip_addr, self.fixed.settings.sip_port)

    def stop(self) -> None:
        if self.buyer is not None:
            self.buyer.stop()
        for part in reversed(self.started):
            part.stop()
        self.started.clear()
