"""The app's metrics exporter: Prometheus text at /metrics on
RTB_METRICS_HOST:RTB_METRICS_PORT, adding up what every gunicorn worker
wrote under the state folder (prometheus_client's multiprocess mode).

A small process of its own rather than a second app inside gunicorn: the
publishers' port can never answer /metrics, a scrape never waits behind
pings for a worker, and it is started, watched and stopped as every other
part is. `python -m app.stack.metrics` runs it.
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector

from app.settings import Settings
from app.stack.process import Service

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def reset_metrics_dir(settings: Settings) -> None:
    """Empty at each start: files of the workers of an earlier run would be added in."""
    shutil.rmtree(settings.metrics_dir, ignore_errors=True)
    settings.metrics_dir.mkdir(parents=True, mode=0o700)


class MetricsExporter:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        self.service = Service("metrics", [sys.executable, "-m", "app.stack.metrics"],
                               settings.var_dir / "exporter")
        self.service.env[MULTIPROC_ENV] = str(settings.metrics_dir)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> None:
        self.service.start(self._ready, timeout=15)

    def stop(self) -> None:
        self.service.stop()


class _Quiet(WSGIRequestHandler):
    """Scrapes come every few seconds: the log keeps only errors."""

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.metrics_dir))
    server = make_server(settings.metrics_host, settings.metrics_port, make_wsgi_app(registry),
                         handler_class=_Quiet)
    server.serve_forever()


if __name__ == "__main__":
    main()
