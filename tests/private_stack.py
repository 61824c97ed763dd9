"""A whole instance of its own, for fault tests and the soak, which stop and
restart its parts: MariaDB, Kamailio and real gunicorn on free ports in their
own state folder, started by the same code as `make run`. Pings go over HTTP,
as publishers send them."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sqlalchemy import text

from app.db import make_sessionmaker
from app.settings import Settings
from app.stack.gunicorn import Gunicorn
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from app.stack.redis import redis_parts
from tests.conftest import stack_env
from tests.market import Market, make_market
from tests.polling import eventually  # noqa: F401 (importable from here, as tests have)


class PrivateStack:
    def __init__(self, var_dir: Path, workers: int = 1, **settings: str):
        """settings: more RTB_* variables, e.g. RTB_SIP_REPLY_SECONDS="1"."""
        self.env = {**stack_env(var_dir), "RTB_HTTP_WORKERS": str(workers), **settings}
        self.settings = Settings.from_env(self.env)
        self.database = PrivateMariaDB(self.settings)
        self.redis = redis_parts(self.settings)
        self.kamailio = Kamailio(self.settings)
        self.gunicorn = Gunicorn(self.settings)
        # gunicorn's workers read their settings from the environment.
        self.gunicorn.service.env.update(self.env)
        self.edge = (self.settings.sip_addr, self.settings.sip_port)
        self.url = f"http://127.0.0.1:{self.settings.http_port}"
        self.sessions = None

    def start(self) -> PrivateStack:
        started = []
        try:
            for part in (self.database, *self.redis, self.kamailio, self.gunicorn):
                part.start()
                started.append(part)
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise
        self.sessions = make_sessionmaker(self.settings)
        return self

    def stop(self) -> None:
        if self.sessions is not None:
            self.sessions.kw["bind"].dispose()
        for part in (self.gunicorn, self.kamailio, *self.redis, self.database):
            part.stop()

    def request(self, method: str, path: str, params: dict, timeout: float = 20) -> tuple[int, dict]:
        """One HTTP request; (status, JSON body). Timeouts and resets raise."""
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{path}?{query}", data=b"", method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def ping(self, key: str, **params) -> tuple[int, dict]:
        return self.request("POST", "/rtbs.json", {"key": key, **params})

    def confirm(self, key: str, uuid: str) -> tuple[int, dict]:
        return self.request("PUT", f"/rtbs/{uuid}.json", {"key": key, "status": "confirmed"})

    def worker_pids(self) -> list[int]:
        master = self.gunicorn.service.pid()
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [int(pid) for pid in children]

    def rows(self, sql: str, **params) -> list:
        with self.sessions() as db:
            return db.execute(text(sql), params).all()

    def market(self, targets: list[dict], **key_settings) -> Market:
        """tests.market.make_market on this stack's database."""
        return make_market(self.sessions, targets, **key_settings)
