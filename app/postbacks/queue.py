"""The postbacks table as the worker and rtbctl use it: claim what is due,
record how an attempt went, list what is pending or given up.

A claim moves a row's next attempt past the request's deadline in the
transaction that picks it (SELECT … FOR UPDATE SKIP LOCKED): two workers
never hold one row at once, and a worker that dies mid-way leaves its rows
due again when that time comes. An outcome is recorded only for the attempt
that claimed the row (its number), never over a later claim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from app.models import Call, Postback, PostbackKey, Reservation
from app.postbacks.message import CallEnd

_DUE = text("SELECT id FROM postbacks WHERE state = 'pending' AND next_attempt_at <= NOW(3)"
            " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED")
_TAKE = text("UPDATE postbacks SET attempts = attempts + 1,"
             " next_attempt_at = NOW(3) + INTERVAL :lease SECOND WHERE id IN :ids"
             ).bindparams(bindparam("ids", expanding=True))
_ENDS = text("""
SELECT p.id, p.attempts, k.postback_url, k.postback_secret, r.uuid, r.payout, r.caller_number,
       r.tags, c.final_status, c.talk_seconds, c.converted
  FROM postbacks p JOIN postback_keys k ON k.id = p.key_id
  LEFT JOIN calls c ON c.id = p.call_row_id
  LEFT JOIN reservations r ON r.id = c.reservation_id
 WHERE p.id IN :ids ORDER BY p.id""").bindparams(bindparam("ids", expanding=True))
_DELIVERED = text("UPDATE postbacks SET state = 'delivered', delivered_at = NOW(3),"
                  " last_error = NULL WHERE id = :id AND state = 'pending'")
# Given up when the next attempt would come after the deadline.
_FAILED = text("""
UPDATE postbacks
   SET state = IF(:final OR NOW(3) + INTERVAL :wait SECOND
                              > created_at + INTERVAL :give_up SECOND, 'failed', 'pending'),
       next_attempt_at = NOW(3) + INTERVAL :wait SECOND, last_error = LEFT(:error, 255)
 WHERE id = :id AND attempts = :attempts AND state = 'pending'""")


@dataclass(frozen=True)
class Due:
    """A claimed postback: attempt number `attempts`; end is None when its call is gone."""

    id: int
    attempts: int
    template: str | None
    end: CallEnd | None
    secret: str | None = field(repr=False)


def claim(session: Session, limit: int, lease_seconds: int) -> list[Due]:
    """Take up to `limit` due postbacks for lease_seconds, and commit."""
    ids = list(session.scalars(_DUE, {"limit": limit}))
    if not ids:
        session.rollback()
        return []
    session.execute(_TAKE, {"ids": ids, "lease": lease_seconds})
    claimed = [_due(row) for row in session.execute(_ENDS, {"ids": ids})]
    session.commit()
    return claimed


def _due(row) -> Due:
    end = None
    if row.uuid is not None:
        end = CallEnd(postback_id=row.id, uuid=row.uuid, answered=row.final_status == 200,
                      payout=row.payout if row.converted else Decimal("0.00"),
                      talk_seconds=row.talk_seconds, converted=bool(row.converted),
                      caller_number=row.caller_number, tags=json.loads(row.tags))
    return Due(id=row.id, attempts=row.attempts, template=row.postback_url, end=end,
               secret=row.postback_secret)


def delivered(session: Session, postback_id: int) -> None:
    session.execute(_DELIVERED, {"id": postback_id})
    session.commit()


def failed(session: Session, due: Due, error: str, wait_seconds: int, give_up_seconds: int,
           final: bool = False) -> None:
    """Record a failed attempt: due again in wait_seconds, or given up (final,
    or when that would pass give_up_seconds after the call's end)."""
    session.execute(_FAILED, {"id": due.id, "attempts": due.attempts, "error": error,
                              "wait": wait_seconds, "give_up": give_up_seconds, "final": final})
    session.commit()


@dataclass(frozen=True)
class Listed:
    id: int
    key_prefix: str
    uuid: str | None
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None


def pending_or_failed(session: Session, failed_only: bool, limit: int) -> list[Listed]:
    """Pending postbacks (next due first), or with failed_only those given up (latest first)."""
    state = "failed" if failed_only else "pending"
    order = Postback.id.desc() if failed_only else Postback.next_attempt_at
    query = (select(Postback, PostbackKey.key_prefix, Reservation.uuid)
             .join(PostbackKey, PostbackKey.id == Postback.key_id)
             .outerjoin(Call, Call.id == Postback.call_row_id)
             .outerjoin(Reservation, Reservation.id == Call.reservation_id)
             .where(Postback.state == state).order_by(order).limit(limit))
    return [Listed(p.id, prefix, uuid, p.state, p.attempts, p.created_at, p.next_attempt_at,
                   p.last_error) for p, prefix, uuid in session.execute(query)]
