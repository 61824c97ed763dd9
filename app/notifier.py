"""Queue Kamailio RPC calls during a transaction; send them after its commit.

Each call goes to every edge (RTB_EDGES), one edge after the other: the
request waits for all of them either way. A rollback drops them. A call that
fails is logged and forgotten: the database stays the truth. Kamailio
falls back to it on a reservation it misses, and reloads a whitelist that
changed within seconds (RTB_WHITELIST in kamailio.cfg). An edge that cannot
be reached is not asked the rest of a commit's calls, so it costs one
timeout, not one for each.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.kamailio_rpc import RPCError, RPCUnreachable
from app.metrics import KAMAILIO_PUSH_FAILURES

log = logging.getLogger(__name__)

RPC = "kamailio_rpc"
_PENDING = "kamailio_pending"
# Kamailio refuses a permissions reload within reload_delta (1 s) of the last.
_RELOAD_TRIES = 12
_RELOAD_PAUSE = 0.2


def queue(session: Session, method: str, *params: object) -> None:
    pending = session.info.setdefault(_PENDING, [])
    if (method, params) not in pending:
        pending.append((method, params))


def _call(rpc, method: str, params: tuple) -> None:
    for _ in range(_RELOAD_TRIES - 1):
        try:
            rpc.call(method, *params)
            return
        except RPCError as error:
            if "ongoing reload" not in str(error):
                raise
        time.sleep(_RELOAD_PAUSE)
    rpc.call(method, *params)


def _send_to(rpc, pending: list) -> None:
    for sent, (method, params) in enumerate(pending):
        try:
            _call(rpc, method, params)
        except RPCError as error:
            KAMAILIO_PUSH_FAILURES.labels(method).inc()
            log.warning("Kamailio at %s not told (%s); it will read the database instead",
                        rpc.url, error)
            if isinstance(error, RPCUnreachable):
                for skipped, _ in pending[sent + 1:]:
                    KAMAILIO_PUSH_FAILURES.labels(skipped).inc()
                return


def _send(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    for rpc in session.info.get(RPC, []):
        _send_to(rpc, pending)


def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)


def listen(factory: sessionmaker[Session]) -> None:
    event.listen(factory, "after_commit", _send)
    event.listen(factory, "after_soft_rollback", lambda session, _tx: _drop(session))
