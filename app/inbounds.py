"""The owner's log (GET /api/v1/rtb_inbounds.json): every logged ping, newest
first, with the reservation it made or was given back and that reservation's
latest call. One query a page, on indexes: pings by time (pings_time_idx) or
by key, the rest joined by primary key. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, aliased

from app import targeting
from app.domain_errors import NotFound
from app.models import Call, Ping, PostbackKey, Reservation
from app.reservations import DIALABLE, STATUSES, utcnow

PAGE = 100
# A ping's status: its reservation's, else what the ping answered.
LOG_STATUSES = (*STATUSES, "rejected", "error")


@dataclass(frozen=True)
class Filters:
    campaign_ids: list[int] = field(default_factory=list)
    publisher_ids: list[int] = field(default_factory=list)
    target_ids: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    # From start (inclusive) to end (exclusive), naive UTC.
    start: datetime | None = None
    end: datetime | None = None
    key_ids: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _status(now: datetime):
    """As reservations.status_of() tells it: a dialable reservation past its
    time is 'expired' already, before the sweep marks it."""
    return case((Reservation.id.is_(None), Ping.outcome),
                (Reservation.status.in_(DIALABLE) & (Reservation.expires_at <= now), "expired"),
                else_=Reservation.status)


def keys(session: Session, filters: Filters) -> list[int] | None:
    """The keys asked for, of the campaigns and publishers asked for (None: every key).
    Looked up first, so that MariaDB can read a rarely pinged campaign's pings
    through pings_key_time_idx rather than walk the whole log by time."""
    if not (filters.key_ids or filters.campaign_ids or filters.publisher_ids):
        return None
    found = select(PostbackKey.id)
    if filters.key_ids:
        found = found.where(PostbackKey.id.in_(filters.key_ids))
    if filters.campaign_ids:
        found = found.where(PostbackKey.campaign_id.in_(filters.campaign_ids))
    if filters.publisher_ids:
        found = found.where(PostbackKey.publisher_id.in_(filters.publisher_ids))
    return list(session.scalars(found))


def query(filters: Filters, key_ids: list[int] | None = None,
          now: datetime | None = None) -> Select:
    """The first page's query: newest first, one row more than a page.

    The pings drive the join (STRAIGHT_JOIN; a filter on targets would let
    MariaDB start from reservations and sort every ping): read newest first
    through an index, a page stops after PAGE + 1 rows instead of sorting
    them all. Keys are not joined, for the same reason: MariaDB joins a small
    table through a buffer, and sorts to do it; page() looks them up after."""
    status = _status(now or utcnow()).label("status")
    earlier = aliased(Call)
    latest_call = (select(func.max(earlier.id)).where(earlier.reservation_id == Reservation.id)
                   .correlate(Reservation).scalar_subquery())
    found = (select(Ping.id, Ping.key_id, Ping.created_at, Ping.outcome, Ping.reason,
                    Ping.duration_ms, Reservation.uuid,
                    Reservation.target_id, Reservation.caller_number, Reservation.tags,
                    Reservation.payout, Reservation.confirmed_at, Call.id.label("call_id"),
                    Call.talk_seconds, status)
             .outerjoin(Reservation, Reservation.id == Ping.reservation_id)
             .outerjoin(Call, (Call.reservation_id == Reservation.id) & (Call.id == latest_call))
             .order_by(Ping.created_at.desc(), Ping.id.desc()).limit(PAGE + 1)
             .prefix_with("STRAIGHT_JOIN"))
    if key_ids is not None:
        found = found.where(Ping.key_id.in_(key_ids))
    else:
        # Filters on the reservation make MariaDB misjudge the ordered read
        # as dearer than sorting all pings; a few keys' pings may be sorted.
        found = found.with_hint(Ping, "FORCE INDEX FOR ORDER BY (pings_time_idx)")
    for column, wanted in ((Reservation.target_id, filters.target_ids),
                           (status, filters.statuses), (Ping.outcome, filters.outcomes),
                           (Ping.reason, filters.reasons)):
        if wanted:
            found = found.where(column.in_(wanted))
    if filters.start is not None:
        found = found.where(Ping.created_at >= filters.start)
    if filters.end is not None:
        found = found.where(Ping.created_at < filters.end)
    return found


def page(session: Session, filters: Filters,
         before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Up to PAGE rows older than ping `before`, and the cursor of the next page (or None)."""
    key_ids = keys(session, filters)
    if key_ids == []:
        return [], None
    found = query(filters, key_ids)
    if before is not None:
        found = _older_than(session, found, before)
    rows = session.execute(found).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    owners = {key_id: (publisher, campaign) for key_id, publisher, campaign in session.execute(
        select(PostbackKey.id, PostbackKey.publisher_id, PostbackKey.campaign_id)
        .where(PostbackKey.id.in_({row.key_id for row in rows})))}
    return [_row(row, *owners[row.key_id]) for row in rows], (rows[-1].id if more else None)


def _older_than(session: Session, query, before: int):
    """Keyset paging: rows after ping `before` in (created_at, id) order. The
    first condition alone bounds the index range; the second breaks ties."""
    moment = session.scalar(select(Ping.created_at).where(Ping.id == before))
    if moment is None:
        raise NotFound("cursor_not_found",
                       "`before` names no ping in the log; start from the first page.")
    return query.where(Ping.created_at <= moment,
                       (Ping.created_at < moment) | (Ping.id < before))


def _row(row, publisher_id: int, campaign_id: int) -> dict[str, Any]:
    caller = (targeting.caller_of(row.caller_number, row.tags or {})
              if row.uuid is not None else None)
    return {
        "id": row.id,
        "key_id": row.key_id,
        "uuid": row.uuid,
        "status": row.status,
        "outcome": row.outcome,
        "reason": row.reason,
        "publisher_id": publisher_id,
        "campaign_id": campaign_id,
        "target_id": row.target_id,
        "caller_number": row.caller_number,
        "caller_state": caller and caller.state,
        "caller_zip": caller and caller.zip,
        "payout": row.payout,
        "duration_ms": row.duration_ms,
        "created_at": row.created_at,
        "confirmed_at": row.confirmed_at,
        "call_id": row.call_id,
        "talk_seconds": row.talk_seconds,
    }
