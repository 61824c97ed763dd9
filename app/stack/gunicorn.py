"""gunicorn serving create_app()."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from app.settings import Settings
from app.stack.metrics import MULTIPROC_ENV, reset_metrics_dir
from app.stack.process import Service

ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


class Gunicorn:
    """app: the WSGI app to serve; the benchmark serves a no-op one with the same settings."""

    def __init__(self, settings: Settings, app: str = "app:create_app()"):
        self.settings = settings
        self.url = f"http://{settings.http_host}:{settings.http_port}"
        state = settings.var_dir / "gunicorn"
        self.service = Service("gunicorn", [
            str(Path(sys.executable).with_name("gunicorn")),
            "--bind", f"{settings.http_host}:{settings.http_port}",
            "--workers", str(settings.http_workers), "--threads", str(settings.http_threads),
            # A worker takes no more connections than it has threads, and keeps
            # none open after its answer: a ping waiting on buyers holds its
            # thread 300 ms or more, and one worker took 43 of wrk's 64
            # kept-alive connections while others idled.
            "--worker-connections", str(settings.http_threads), "--keep-alive", "0",
            "--timeout", str(settings.http_timeout), "--graceful-timeout", "10",
            "--access-logfile", str(state / "access.log"),
            # The path without its query string: publishers send their key there.
            "--access-logformat", ACCESS_LOG_FORMAT,
            "--config", "python:app.stack.gunicorn_hooks",
            app,
        ], state)
        # The workers' metrics, added up by app/stack/metrics.py.
        self.service.env[MULTIPROC_ENV] = str(settings.metrics_dir)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return json.load(response).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 30) -> None:
        reset_metrics_dir(self.settings)
        self.service.start(self._ready, timeout=timeout)

    def stop(self) -> None:
        self.service.stop()
