"""A whole instance of its own, for fault tests and the soak, which stop and
restart its parts: MariaDB, Kamailio and real gunicorn on free ports in their
own state folder, started by the same code as `make run`. Pings go over HTTP,
as publishers send them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.db import make_sessionmaker
from app.settings import Settings
from app.stack.gunicorn import Gunicorn
from app.stack.kamailio import Kamailio
from app.stack.mariadb import PrivateMariaDB
from app.stack.redis import redis_parts
from tests.conftest import stack_env
from tests.instance import DatabaseAccess, PublisherApi
from tests.polling import eventually  # noqa: F401 (importable from here, as tests have)


class PrivateStack(PublisherApi, DatabaseAccess):
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

    @contextmanager
    def database_down(self) -> Iterator[None]:
        """MariaDB stopped for the block, and started again after it, also when
        the block fails: the module's next tests need it."""
        self.database.stop()
        try:
            yield
        finally:
            self.database.start()

    def worker_pids(self) -> list[int]:
        master = self.gunicorn.service.pid()
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [int(pid) for pid in children]
