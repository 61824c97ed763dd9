"""Pings become reservations; reading them back. Every function takes a Session."""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import notifier
from app.credentials import key_hash
from app.errors import ApiError
from app.models import PostbackKey, Reservation, Target
from app.phone import InvalidNumber, to_e164

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# How long Kamailio keeps a pushed reservation beyond its expiry, in seconds:
# enough to answer a late dial with 410 rather than a database query.
HTABLE_GRACE = 30


@dataclass(frozen=True)
class Rejection:
    reason: str


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def authenticate(session: Session, key: str | None) -> PostbackKey:
    if not key:
        raise ApiError(401, "missing_key", "Send your postback key as `key`.")
    found = session.scalar(select(PostbackKey).where(PostbackKey.key_hash == key_hash(key)))
    if found is None:
        raise ApiError(401, "invalid_key", "That postback key is not known.")
    return found


def normalise_caller(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        return to_e164(raw)
    except InvalidNumber as error:
        raise ApiError(422, "invalid_caller_number", str(error)) from None


def best_target(session: Session, campaign_id: int) -> Target | None:
    return session.scalar(
        select(Target)
        .where(Target.campaign_id == campaign_id, Target.enabled.is_(True))
        .order_by(Target.payout.desc(), Target.id)
        .limit(1)
    )


def reserve(session: Session, key: PostbackKey, caller_number: str | None,
            tags: dict[str, Any]) -> Reservation | Rejection:
    """Reserve the campaign's best target for this caller; Kamailio hears of it after commit."""
    target = best_target(session, key.campaign_id)
    if target is None:
        return Rejection("no_target")
    now = utcnow()
    reservation = Reservation(
        uuid=str(uuidlib.uuid4()), key_id=key.id, publisher_id=key.publisher_id,
        campaign_id=key.campaign_id, target_id=target.id, caller_number=caller_number,
        inbound_number=key.inbound_number, payout=target.payout, min_seconds=target.min_seconds,
        tags=tags, status="reserved", created_at=now,
        expires_at=now + timedelta(seconds=key.ttl_seconds),
    )
    session.add(reservation)
    session.flush()
    notifier.queue(session, "htable.setxs", "rsv", reservation.uuid,
                   htable_value(reservation, target), key.ttl_seconds + HTABLE_GRACE)
    return reservation


def htable_value(reservation: Reservation, target: Target) -> str:
    """The value Kamailio's rsv htable holds, as live_reservation_routes packs it."""
    expires = int(reservation.expires_at.replace(tzinfo=UTC).timestamp())
    return f"{reservation.publisher_id},{expires},{target.sip_uri}"


def find(session: Session, key: PostbackKey, uuid: str) -> Reservation:
    """A reservation made with this key; any other looks the same as none."""
    found = None
    if UUID_PATTERN.match(uuid):
        found = session.scalar(
            select(Reservation).where(Reservation.uuid == uuid, Reservation.key_id == key.id))
    if found is None:
        raise ApiError(404, "reservation_not_found", "No reservation with that uuid for this key.")
    return found


def status_of(reservation: Reservation, now: datetime | None = None) -> str:
    if reservation.status == "reserved" and reservation.expires_at <= (now or utcnow()):
        return "expired"
    return reservation.status
