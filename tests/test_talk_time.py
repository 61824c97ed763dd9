"""Talk time is measured by the edge: a call whose ends hung up around it, or
vanished, is ended by the edge's keepalives and billed to the last moment
both ends were confirmed there, not to CALL_MAX_SECONDS. Topology hiding
keeps the buyer's address from the publisher.

Keepalives come every 30 s at the least, so both calls are set up, and
hung up, at once in one fixture; the tests wait for the edge to end them."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests import raw_sip
from tests.conftest import Market
from tests.private_stack import PrivateStack, eventually
from tests.sip import Buyer, start_dial

KEEPALIVE_SECONDS = 30
REPLY_SECONDS = 1
# The failed keepalive's wait, the dialog module's 10 s grace and some slack.
ENDED_WITHIN = KEEPALIVE_SECONDS + REPLY_SECONDS + 10 + 15
MIN_SECONDS = 20


@dataclass
class HeldCall:
    buyer: Buyer
    publisher: subprocess.Popen
    messages: Path
    market: Market
    uuid: str
    hung_up_at: float = 0.0

    def kept_alive(self) -> bool:
        """Each end has been sent a keepalive (and answers it: SIPp runs with -aa)."""
        return all(t.exists() and "OPTIONS sip:" in t.read_text(errors="replace")
                   for t in (self.buyer.messages, self.messages))

    def stop(self) -> None:
        self.buyer.stop()
        if self.publisher.poll() is None:
            self.publisher.kill()
            self.publisher.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    started = PrivateStack(tmp_path_factory.mktemp("talk"),
                           RTB_SIP_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
                           RTB_SIP_REPLY_SECONDS=str(REPLY_SECONDS),
                           RTB_SIP_TOPOLOGY_HIDING="1").start()
    yield started
    started.stop()


def call_row(stack: PrivateStack, uuid: str):
    rows = stack.rows("SELECT UNIX_TIMESTAMP(c.answered_at) AS answered, c.ended_at, c.talk_seconds,"
                      " c.converted FROM calls c JOIN reservations r ON r.id = c.reservation_id"
                      " WHERE r.uuid = :uuid", uuid=uuid)
    return rows[-1] if rows else None


def hold_call(stack: PrivateStack, workdir: Path) -> HeldCall:
    """A call both ends hold for far longer than the tests last."""
    workdir.mkdir()
    buyer = Buyer(workdir, timeout=4 * KEEPALIVE_SECONDS)
    m = stack.market([{"sip_uri": buyer.uri, "min_seconds": MIN_SECONDS}])
    uuid = stack.ping(m.key)[1]["rtb"]["uuid"]
    publisher, messages = start_dial(workdir, stack.edge, uuid, source_ip=m.ip,
                                     hold_s=4 * KEEPALIVE_SECONDS)
    return HeldCall(buyer, publisher, messages, m, uuid)


def last_keepalive(trace: Path, before: float) -> float:
    """When the last keepalive sent before `before` reached this end (its SIPp trace)."""
    stamps = re.findall(r"^-+ (\S+ \S+)\n.*received.*\n\nOPTIONS sip:",
                        trace.read_text(errors="replace"), re.M)
    times = [datetime.fromisoformat(s).timestamp() for s in stamps]
    return max(t for t in times if t < before)


def bye_around_the_edge(buyer: Buyer, source_ip: str) -> bytes:
    """The BYE a publisher would send straight to the buyer, had it learned
    the buyer's address: the dialog's Call-ID and tags, from the buyer's trace."""
    seen = buyer.received()

    def header(pattern: str) -> str:
        return re.search(pattern, seen, re.M).group(1).strip()

    headers = {"Call-ID": header(r"^Call-ID: (.*)$"), "From": header(r"^From: (.*)$"),
               "To": header(r"^To: (.*;tag=.*)$"), "CSeq": "2 BYE"}
    return raw_sip.request("BYE", buyer.uri, source_ip, headers=headers)


@pytest.fixture(scope="module")
def hung_up(stack, tmp_path_factory):
    """Two answered calls, past a keepalive both ends answered. Then one
    publisher sends its BYE around the edge, straight to the buyer; the other
    call's ends both vanish."""
    workdir = tmp_path_factory.mktemp("calls")
    calls = {name: hold_call(stack, workdir / name) for name in ("around", "vanished")}
    try:
        assert eventually(lambda: all(call_row(stack, c.uuid) and call_row(stack, c.uuid).answered
                                      for c in calls.values()), 15)
        assert eventually(lambda: all(c.kept_alive() for c in calls.values()),
                          KEEPALIVE_SECONDS + 10)
        time.sleep(0.5)
        around, vanished = calls["around"], calls["vanished"]
        raw_sip.send(("127.0.0.1", around.buyer.port),
                     bye_around_the_edge(around.buyer, around.market.ip), around.market.ip,
                     timeout=0.5)
        around.hung_up_at = time.time()
        vanished.stop()
        vanished.hung_up_at = time.time()
        yield calls
    finally:
        for c in calls.values():
            c.stop()


def test_the_publisher_never_sees_the_buyers_address(hung_up):
    assert hung_up["around"].buyer.uri not in hung_up["around"].messages.read_text(errors="replace")


def test_a_bye_around_the_edge_leaves_the_call_up_until_keepalives_end_it(stack, hung_up):
    call = hung_up["around"]
    assert call.buyer.wait(10) == 0
    assert call_row(stack, call.uuid).ended_at is None
    assert eventually(lambda: call_row(stack, call.uuid).ended_at is not None, ENDED_WITHIN)


@pytest.mark.parametrize("name", ["around", "vanished"])
def test_a_call_the_edge_ends_by_keepalives_is_billed_to_its_last_confirmed_moment(
        stack, hung_up, name):
    call = hung_up[name]
    assert eventually(lambda: call_row(stack, call.uuid).ended_at is not None, ENDED_WITHIN)
    row = call_row(stack, call.uuid)
    confirmed = last_keepalive(call.buyer.messages, call.hung_up_at) - float(row.answered)
    # The edge counts in the whole seconds of its timers.
    assert abs(float(row.talk_seconds) - confirmed) < 3, (row, confirmed)
    assert row.converted
