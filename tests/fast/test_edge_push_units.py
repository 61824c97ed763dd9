"""Pushing to an edge that cannot be reached: one try per commit, not one per change."""

from __future__ import annotations

import socket

import pytest

from app import notifier
from app.kamailio_rpc import KamailioRPC, RPCUnreachable
from app.metrics import KAMAILIO_PUSH_FAILURES


def closed_port() -> int:
    """A loopback TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Counted(KamailioRPC):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tries = 0

    def call(self, method: str, *params: object) -> object:
        self.tries += 1
        return super().call(method, *params)


@pytest.fixture
def down(tmp_path):
    client = Counted(f"http://127.0.0.1:{closed_port()}/RPC", tmp_path / "rpc-secret", timeout=1)
    yield client
    client.close()


def test_an_edge_refusing_connections_is_unreachable(down):
    with pytest.raises(RPCUnreachable):
        down.call("core.version")


def test_changes_after_an_unreachable_edge_are_counted_as_failed_without_trying(down):
    before = {m: KAMAILIO_PUSH_FAILURES.labels(m)._value.get() for m in ("htable.sets", "htable.delete")}
    notifier._send_to(down, [("htable.sets", ("rsv", "a", "1")), ("htable.delete", ("rsv", "b"))])
    assert down.tries == 1
    assert {m: KAMAILIO_PUSH_FAILURES.labels(m)._value.get() - n for m, n in before.items()} == \
        {"htable.sets": 1, "htable.delete": 1}
