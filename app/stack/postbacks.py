"""The postback worker (`python -m app.postbacks`), outside the request path."""

from __future__ import annotations

import sys

from app.settings import Settings
from app.stack.process import Service


class PostbackWorker:
    def __init__(self, settings: Settings):
        state = settings.var_dir / "postbacks"
        self.heartbeat = state / "heartbeat"
        self.service = Service("postbacks", [sys.executable, "-m", "app.postbacks"], state)

    def start(self, timeout: float = 30) -> None:
        # Ready once it has read the queue, which writes its heartbeat.
        self.heartbeat.unlink(missing_ok=True)
        self.service.start(self.heartbeat.exists, timeout=timeout)

    def stop(self) -> None:
        self.service.stop()
