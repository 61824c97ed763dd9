"""gunicorn's server hooks (--config python:app.stack.gunicorn_hooks)."""

from __future__ import annotations

from prometheus_client import multiprocess


def child_exit(server, worker) -> None:
    """A worker that exited (restarted, or killed by its timeout) leaves its
    counters to the sum, and no live gauges behind."""
    multiprocess.mark_process_dead(worker.pid)
