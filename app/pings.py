"""A ping from start to answer, and the ping log: what each ping answered and why.

ping() owns its transaction: it commits the reservation with the ping's log
row, or rolls back and commits the log row alone.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import reservations
from app.domain_errors import DomainError, Invalid
from app.models import Ping, PingDay, PostbackKey
from app.reservations import Rejection, Reserved
from app.settings import PingLimits

DEADLOCK = 1213
# How often in all a ping chosen as a deadlock's victim is tried.
DEADLOCK_TRIES = 3


def ping(session: Session, key: PostbackKey, caller_number: str | None, tags: dict[str, Any],
         started: float, limits: PingLimits = PingLimits()) -> Reserved | Rejection:
    """Reserve (and, for auto-confirm keys, confirm), log the ping, commit.

    InnoDB may pick the ping as a deadlock's victim (its foreign key checks
    share-lock the target a concurrent claim is locking): the transaction is
    rolled back whole, and tried again, as the procedures do.
    """
    attempt = 1
    while True:
        try:
            return _ping_once(session, key, caller_number, tags, started, limits)
        except OperationalError as error:
            if attempt == DEADLOCK_TRIES or not error.orig or error.orig.args[0] != DEADLOCK:
                raise
            session.rollback()
            attempt += 1


def _ping_once(session: Session, key: PostbackKey, caller_number: str | None,
               tags: dict[str, Any], started: float, limits: PingLimits) -> Reserved | Rejection:
    try:
        check_tags(tags, limits)
        caller = reservations.normalise_caller(caller_number, key)
        outcome = reservations.reserve(session, key, caller, tags, limits)
    except DomainError as error:
        session.rollback()
        record(session, key, error.code, started)
        session.commit()
        raise
    if isinstance(outcome, Reserved) and key.auto_confirm and not outcome.shielded:
        if reservations.confirm(session, outcome.reservation, fallback=True) != "confirmed":
            outcome = Rejection("capped")
    record(session, key, outcome, started)
    session.commit()
    return outcome


def check_tags(tags: dict[str, Any], limits: PingLimits) -> None:
    """A ping's tags: few, short-named, and each one short text, a number, true/false or null."""
    if len(tags) > limits.tags:
        raise Invalid("invalid_tag", f"a ping carries at most {limits.tags} tags")
    for name, value in tags.items():
        if len(name) > limits.tag_name_chars:
            raise Invalid("invalid_tag", f"a tag name has at most {limits.tag_name_chars} characters")
        if isinstance(value, dict | list):
            raise Invalid("invalid_tag", f"tag {name!r} must be text, a number, true, false or null")
        if len(str(value)) > limits.tag_value_chars:
            raise Invalid("invalid_tag",
                          f"tag {name!r} has more than {limits.tag_value_chars} characters")


def record(session: Session, key: PostbackKey, outcome: Reserved | Rejection | str,
           started: float) -> None:
    """Log one ping: a reservation, a rejection, or the code of the error it got."""
    if isinstance(outcome, Reserved):
        kind, reason = ("duplicate", None) if outcome.shielded else (outcome.reservation.status, None)
        reservation_id = outcome.reservation.id
    elif isinstance(outcome, Rejection):
        kind, reason, reservation_id = "rejected", outcome.reason, None
    else:
        kind, reason, reservation_id = "error", outcome, None
    # A plain INSERT: nothing reads the row back, so the ORM's unit of work is not needed.
    session.execute(insert(Ping.__table__).values(
        key_id=key.id, outcome=kind, reason=reason, reservation_id=reservation_id,
        duration_ms=round((time.perf_counter() - started) * 1000, 3)))


def summary(session: Session, key_ids: list[int] | None, since: datetime) -> list[dict]:
    """Counts by outcome and reason, with their average and slowest time, most first.

    key_ids None counts every key's pings. Pings that rtb_retain() has rolled
    up count by whole UTC days: the days that begin at or after `since`.
    """
    kept = (select(Ping.outcome, Ping.reason, func.count(), func.sum(Ping.duration_ms),
                   func.max(Ping.duration_ms))
            .where(Ping.created_at >= since).group_by(Ping.outcome, Ping.reason))
    rolled = (select(PingDay.outcome, func.nullif(PingDay.reason, ""), func.sum(PingDay.pings),
                     func.sum(PingDay.duration_ms), func.max(PingDay.max_duration_ms))
              .where(PingDay.day >= since).group_by(PingDay.outcome, PingDay.reason))
    if key_ids is not None:
        kept = kept.where(Ping.key_id.in_(key_ids))
        rolled = rolled.where(PingDay.key_id.in_(key_ids))
    totals: dict[tuple, list] = {}
    for outcome, reason, count, total_ms, max_ms in [*session.execute(kept),
                                                     *session.execute(rolled)]:
        found = totals.setdefault((outcome, reason), [0, Decimal(0), max_ms])
        found[0] += int(count)
        found[1] += total_ms
        found[2] = max(found[2], max_ms)
    return [{"outcome": o, "reason": r, "pings": n, "avg_ms": round(float(total / n), 3),
             "max_ms": float(slowest)}
            for (o, r), (n, total, slowest) in sorted(
                totals.items(), key=lambda item: (-item[1][0], item[0][0], item[0][1] or ""))]
