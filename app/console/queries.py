"""What the admin pages read, besides the RTB log (app/inbounds.py). Reads
only; every query on pings and calls goes through an index on time or key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.orm import Session

from app.models import Call, Ping, Reservation, Target, target_usage
from app.reports import reservation

# A ping is logged after its reservation is written, well within this.
PING_LAG = timedelta(minutes=1)
OUTCOMES = ("reserved", "confirmed", "duplicate", "stale", "rejected", "error")


def minute(column):
    return func.date_format(column, "%Y-%m-%d %H:%i")


def hour(column):
    return func.date_format(column, "%Y-%m-%d %H:00")


def pings_query(now: datetime) -> Select:
    """Pings per minute and outcome over the last hour: a range of pings_time_idx."""
    at = minute(Ping.created_at).label("at")
    return (select(at, Ping.outcome, func.count().label("pings"))
            .where(Ping.created_at >= now - timedelta(hours=1)).group_by(at, Ping.outcome))


def pings_per_minute(session: Session, now: datetime) -> dict[tuple[str, str], int]:
    return {(row.at, row.outcome): row.pings for row in session.execute(pings_query(now))}


def whole(_column):
    """One bucket for the whole period."""
    return literal("all")


def calls_query(since: datetime, bucket=hour) -> Select:
    """Calls, answers, conversions and payout earned per bucket since a moment;
    calls by calls_claimed_idx, each reservation by its primary key."""
    at = bucket(Call.claimed_at).label("at")
    return (select(at, func.count().label("calls"), func.count(Call.answered_at).label("answers"),
                   func.sum(case((Call.converted, 1), else_=0)).label("conversions"),
                   func.sum(case((Call.converted, Reservation.payout), else_=0)).label("payout"))
            .join(Reservation, Reservation.id == Call.reservation_id)
            .where(Call.claimed_at >= since).group_by(at))


def calls_since(session: Session, since: datetime, bucket=hour) -> list[Any]:
    return list(session.execute(calls_query(since, bucket)))


def making_ping_query(made: Reservation) -> Select:
    """The ping that made a reservation: its key's first ping naming it, read
    through pings_key_time_idx (or pings_time_idx) from the moment it was made."""
    return (select(Ping).where(Ping.key_id == made.key_id,
                               Ping.created_at >= made.created_at - timedelta(seconds=1),
                               Ping.created_at < made.created_at + PING_LAG,
                               Ping.reservation_id == made.id)
            .order_by(Ping.created_at, Ping.id).limit(1))


def reservation_page(session: Session, uuid: str) -> dict[str, Any]:
    found = reservation(session, uuid)
    calls = session.scalars(select(Call).where(Call.reservation_id == found.id)
                            .order_by(Call.id)).all()
    return {"reservation": found, "calls": calls, "ping": session.scalar(making_ping_query(found)),
            "candidates": [int(t) for t in found.candidates.split(",") if t]}


def targets_page(session: Session, campaign_id: int | None = None) -> list[Any]:
    """Each target with its live usage (the target_usage view) beside its caps."""
    used = target_usage.c
    query = (select(Target, used.live, used.this_hour, used.today, used.this_month)
             .join(target_usage, used.target_id == Target.id)
             .order_by(Target.campaign_id, Target.id))
    if campaign_id is not None:
        query = query.where(Target.campaign_id == campaign_id)
    return list(session.execute(query))
