"""What an operator looks at: pings, reservations and calls over a period.

Reads only: nothing here writes, so nothing here commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, literal, or_, select
from sqlalchemy.orm import Session

from app.domain_errors import NotFound
from app.models import Bid, Call, Ping, PingDay, PostbackKey, Reservation, ReservationDay
from app.reservations import DIALABLE, utcnow

BY = ("publisher", "campaign", "target")
FIGURES = ("pings", "reservations", "calls", "answered", "converted", "talk_seconds", "payout")


def reservation(session: Session, uuid: str) -> Reservation:
    """A reservation by its uuid, whichever key made it."""
    found = session.scalar(select(Reservation).where(Reservation.uuid == uuid.lower()))
    if found is None:
        raise NotFound("reservation_not_found", f"no reservation {uuid}")
    return found


def recent_reservations(session: Session, status: str | None = None,
                        campaign_id: int | None = None, limit: int = 50) -> list[Reservation]:
    """Newest first. A status is as status_of() tells it: a dialable reservation
    past its time is 'expired' already, before the sweep marks it."""
    now = utcnow()
    query = select(Reservation).order_by(Reservation.id.desc()).limit(limit)
    if status == "expired":
        query = query.where(or_(Reservation.status == "expired",
                                Reservation.status.in_(DIALABLE) & (Reservation.expires_at <= now)))
    elif status in DIALABLE:
        query = query.where(Reservation.status == status, Reservation.expires_at > now)
    elif status:
        query = query.where(Reservation.status == status)
    if campaign_id is not None:
        query = query.where(Reservation.campaign_id == campaign_id)
    return list(session.scalars(query))


def _group(by: str | None, publisher, campaign, target):
    return {"publisher": publisher, "campaign": campaign, "target": target}.get(
        by, literal("all")).label("group")


def report(session: Session, since: datetime, by: str | None = None) -> list[dict[str, Any]]:
    """One row per publisher, campaign or target (or one for all) since a moment.

    History that rtb_retain() has rolled up counts by whole UTC days: the days
    that begin at or after `since`."""
    rows: dict[Any, dict[str, Any]] = {}
    for query in _figures(since, by):
        for found in session.execute(query).mappings():
            row = rows.setdefault(found["group"], dict.fromkeys(FIGURES, 0))
            for figure in FIGURES:
                row[figure] += found.get(figure) or 0
    name = by or "all"
    return sorted(({name: group, **{f: int(row[f]) for f in FIGURES[:5]},
                    "talk_seconds": float(row["talk_seconds"]), "payout": float(row["payout"])}
                   for group, row in rows.items()),
                  key=lambda r: (r[name] is None, str(r[name])))


def _figures(since: datetime, by: str | None) -> list[Select]:
    """The report's counts from the rows kept, and from the days rolled up."""
    pinged = _group(by, PostbackKey.publisher_id, PostbackKey.campaign_id, Reservation.target_id)
    reserved = _group(by, Reservation.publisher_id, Reservation.campaign_id, Reservation.target_id)
    called = _group(by, Reservation.publisher_id, Reservation.campaign_id, Call.target_id)
    rolled = _group(by, ReservationDay.publisher_id, ReservationDay.campaign_id,
                    ReservationDay.target_id)
    rolled_pings = _group(by, PostbackKey.publisher_id, PostbackKey.campaign_id,
                          func.nullif(PingDay.target_id, 0))
    return [
        select(pinged, func.count().label("pings"))
        .select_from(Ping).join(PostbackKey, PostbackKey.id == Ping.key_id)
        .outerjoin(Reservation, Reservation.id == Ping.reservation_id)
        .where(Ping.created_at >= since).group_by(pinged),
        select(rolled_pings, func.sum(PingDay.pings).label("pings"))
        .join(PostbackKey, PostbackKey.id == PingDay.key_id)
        .where(PingDay.day >= since).group_by(rolled_pings),
        select(reserved, func.count().label("reservations"))
        .where(Reservation.created_at >= since).group_by(reserved),
        select(called, func.count().label("calls"), func.count(Call.answered_at).label("answered"),
               func.sum(case((Call.converted, 1), else_=0)).label("converted"),
               func.sum(Call.talk_seconds).label("talk_seconds"),
               func.sum(case((Call.converted, Reservation.payout), else_=0)).label("payout"))
        .join(Reservation, Reservation.id == Call.reservation_id)
        .where(Call.claimed_at >= since).group_by(called),
        select(rolled, *(func.sum(getattr(ReservationDay, figure)).label(figure)
                         for figure in FIGURES[1:]))
        .where(ReservationDay.day >= since).group_by(rolled),
    ]


def bids(session: Session, reservation: Reservation) -> list[dict[str, Any]]:
    """What each pass-through target answered the ping that made the reservation;
    `won` marks the bid it holds now (its target's, if that bid may take the call)."""
    rows = session.scalars(select(Bid).where(Bid.uuid == reservation.uuid).order_by(Bid.target_id))
    return [{"target_id": b.target_id,
             "won": b.target_id == reservation.target_id and b.payout is not None,
             "outcome": b.outcome, "reason": b.reason,
             "ms": float(b.duration_ms), "amount": _money(b.amount), "payout": _money(b.payout),
             "seconds": b.min_seconds, "bid_id": b.bid_id, "destination": b.destination,
             "expires_at": b.expires_at} for b in rows]


def bid_summary(session: Session, key_ids: list[int] | None, since: datetime) -> list[dict]:
    """Answers of pass-through targets per target, outcome and reason, with their average
    and slowest time."""
    query = (select(Bid.target_id, Bid.outcome, Bid.reason, func.count(),
                    func.avg(Bid.duration_ms), func.max(Bid.duration_ms))
             .where(Bid.created_at >= since)
             .group_by(Bid.target_id, Bid.outcome, Bid.reason)
             .order_by(Bid.target_id, func.count().desc()))
    if key_ids is not None:
        query = query.where(Bid.key_id.in_(key_ids))
    return [{"target_id": target, "outcome": outcome, "reason": reason, "answers": count,
             "avg_ms": round(float(avg), 3), "max_ms": float(slowest)}
            for target, outcome, reason, count, avg, slowest in session.execute(query)]


def _money(value) -> float | None:
    return None if value is None else float(value)
