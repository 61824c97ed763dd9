"""What an operator looks at: pings, reservations and calls over a period.

Reads only: nothing here writes, so nothing here commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.orm import Session

from app.domain_errors import NotFound
from app.models import Call, Ping, PostbackKey, Reservation
from app.reservations import DIALABLE, utcnow

BY = ("publisher", "campaign", "target")


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
    return {"publisher": publisher, "campaign": campaign, "target": target}.get(by, literal("all"))


def report(session: Session, since: datetime, by: str | None = None) -> list[dict[str, Any]]:
    """One row per publisher, campaign or target (or one for all) since a moment."""
    pinged = _group(by, PostbackKey.publisher_id, PostbackKey.campaign_id, Reservation.target_id)
    pings = session.execute(
        select(pinged, func.count())
        .select_from(Ping).join(PostbackKey, PostbackKey.id == Ping.key_id)
        .outerjoin(Reservation, Reservation.id == Ping.reservation_id)
        .where(Ping.created_at >= since).group_by(pinged)).all()
    reserved = _group(by, Reservation.publisher_id, Reservation.campaign_id, Reservation.target_id)
    reservations = session.execute(
        select(reserved, func.count()).where(Reservation.created_at >= since)
        .group_by(reserved)).all()
    called = _group(by, Reservation.publisher_id, Reservation.campaign_id, Call.target_id)
    calls = session.execute(
        select(called, func.count(), func.count(Call.answered_at),
               func.sum(case((Call.converted, 1), else_=0)),
               func.coalesce(func.sum(Call.talk_seconds), 0),
               func.coalesce(func.sum(case((Call.converted, Reservation.payout), else_=0)), 0))
        .join(Reservation, Reservation.id == Call.reservation_id)
        .where(Call.claimed_at >= since).group_by(called)).all()

    rows: dict[Any, dict[str, Any]] = {}

    def row(group) -> dict[str, Any]:
        return rows.setdefault(group, {by or "all": group, "pings": 0, "reservations": 0,
                                       "calls": 0, "answered": 0, "converted": 0,
                                       "talk_seconds": 0.0, "payout": 0.0})

    for group, count in pings:
        row(group)["pings"] = count
    for group, count in reservations:
        row(group)["reservations"] = count
    for group, count, answered, converted, talk, payout in calls:
        row(group).update(calls=count, answered=answered, converted=int(converted or 0),
                          talk_seconds=float(talk), payout=float(payout))
    return sorted(rows.values(), key=lambda r: (r[by or "all"] is None, str(r[by or "all"])))
