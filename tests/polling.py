"""The one polling loop, for what happens a little later in another process
(Kamailio's sweep, a call's end, a worker's restart)."""

from __future__ import annotations

import time


def eventually(check, timeout: float, interval: float = 0.2) -> bool:
    """Poll check() until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
