"""What an operator looks at: pings, reservations and calls over a period.

Reads only: nothing here writes, so nothing here commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from app.models import Call, Ping, PostbackKey, Reservation

BY = ("publisher", "campaign", "target")


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
