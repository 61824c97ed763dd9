"""The app's client for Kamailio's JSON-RPC keeps a connection per thread
between calls, and lets go of them when closed or dropped, and of a
thread's own when the thread ends."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

from app.kamailio_rpc import KamailioRPC

ESTABLISHED = "01"


def connections_to(port: int) -> set[str]:
    """The sockets (inodes) of the TCP connections this process holds open to a local port."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            # The listing's own descriptor, closed since.
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    rows = (line.split() for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:])
    return {row[9] for row in rows if row[9] in ours and row[3] == ESTABLISHED
            and int(row[2].split(":")[1], 16) == port}


def test_calls_share_one_connection_which_close_or_dropping_the_client_ends(settings, kamailio):
    # Other clients of this process may hold connections of their own: only new ones count.
    before = connections_to(settings.rpc_port)
    client = KamailioRPC.for_settings(settings, timeout=2)
    for _ in range(3):
        assert client.call("core.version")
    assert len(connections_to(settings.rpc_port) - before) == 1
    client.close()
    assert not connections_to(settings.rpc_port) - before

    dropped = KamailioRPC.for_settings(settings, timeout=2)
    assert dropped.call("core.version")
    # Dropped unclosed, its socket is closed at once, not left to the
    # collector (whose ResourceWarning the suite turns into an error).
    del dropped
    gc.collect()
    assert not connections_to(settings.rpc_port) - before


def test_each_thread_calls_over_its_own_connection_which_ends_with_the_thread(settings, kamailio):
    before = connections_to(settings.rpc_port)
    client = KamailioRPC.for_settings(settings, timeout=2)
    assert client.call("core.version")
    seen = []

    def call_once():
        assert client.call("core.version")
        seen.append(connections_to(settings.rpc_port) - before)

    thread = threading.Thread(target=call_once)
    thread.start()
    thread.join()
    assert len(seen[0]) == 2
    gc.collect()
    # The ended thread's handle closed its connection; the caller's stays.
    assert len(connections_to(settings.rpc_port) - before) == 1
    client.close()
    assert not connections_to(settings.rpc_port) - before
