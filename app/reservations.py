"""Reservations: confirming and reading them. Functions take a Session.

rtb_ping (pings.ping()) makes them. confirm() commits the caller's session
first and then lets rtb_confirm() commit on a connection of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.credentials import key_hash
from app.domain_errors import Invalid, NotFound, Unauthenticated
from app.models import Call, PostbackKey, Reservation
from app.phone import InvalidNumber, to_e164

# kamailio.cfg's RTB_LOOKUP holds a copy; tests/test_shared_rules.py pins the two.
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# How long Kamailio keeps a pushed reservation beyond its expiry, in seconds:
# a dial just too late is answered 410 from memory; then the entry goes.
HTABLE_GRACE = 5
# Every status a reservation has. schema.sql's check constraint, views and
# procedures hold copies of these sets; tests/test_shared_rules.py pins them.
STATUSES = ("reserved", "confirmed", "claimed", "completed", "no-target", "expired")
# Reservations a publisher may still dial.
DIALABLE = ("reserved", "confirmed")
CONFIRMED_FIELDS = ["status", "target_id", "payout", "min_seconds", "confirmed_at"]


@dataclass(frozen=True)
class Rejection:
    reason: str


@dataclass(frozen=True, slots=True)
class Answered:
    """A reservation as rtb_ping answered with it: what a ping's answer and
    Kamailio's copy show. Not an ORM object, whose making cost a ping a
    twentieth of its worker's time (docs/performance.md)."""
    uuid: str
    status: str
    payout: Decimal
    min_seconds: int
    inbound_number: str | None
    expires_at: datetime
    caller_number: str | None
    publisher_id: int
    # Its latest call, for a ping Ping Shield answered with a reservation called already.
    calls: list[Call]


@dataclass(frozen=True)
class Reserved:
    reservation: Answered
    shielded: bool = False


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def authenticate(session: Session, key: str | None) -> PostbackKey:
    found = session.scalar(select(PostbackKey).where(PostbackKey.key_hash == digest_of(key)))
    if found is None:
        raise unknown_key()
    return found


def digest_of(key: str | None) -> str:
    """The stored digest of a postback key; none at all is refused."""
    if not key:
        raise Unauthenticated("missing_key", "Send your postback key as `key`.")
    return key_hash(key)


def unknown_key() -> Unauthenticated:
    return Unauthenticated("invalid_key", "That postback key is not known.")


def normalise_caller(raw: str | None, key: PostbackKey) -> str | None:
    if raw is None or raw == "":
        if key.require_caller_number:
            raise Invalid("missing_caller_number", "This key requires `caller_number`.")
        return None
    try:
        return to_e164(raw)
    except InvalidNumber as error:
        raise Invalid("invalid_caller_number", str(error)) from None


def htable_value(reservation: Reservation | Answered) -> str:
    """The value Kamailio's rsv htable holds, as live_reservation_routes packs it
    and RTB_LOOKUP reads it (tests/test_shared_rules.py pins the three)."""
    expires = int(reservation.expires_at.replace(tzinfo=UTC).timestamp())
    return f"{reservation.publisher_id},{expires}"


def confirm(session: Session, reservation: Reservation, fallback: bool = False) -> str:
    """Charge a target's caps for a reservation (rtb_confirm decides, under lock).

    Commits the session first. Without fallback only the reserved target is
    tried. Returns rtb_confirm's result; the reservation is refreshed.
    """
    # End the session's transaction first, so its connection goes back to the
    # pool: a request never holds two while it waits for the target's lock.
    session.commit()
    with session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CALL rtb_confirm(:uuid, :publisher, FALSE, :fallback, NULL, NULL, NULL, "
                          "@r, @d, @c, @t)"),
                     {"uuid": reservation.uuid, "publisher": reservation.publisher_id,
                      "fallback": fallback})
        result = conn.scalar(text("SELECT @r"))
    # Only what rtb_confirm() changes: a full refresh would reload the calls too.
    session.refresh(reservation, CONFIRMED_FIELDS)
    return result


def find(session: Session, key: PostbackKey, uuid: str) -> Reservation:
    """A reservation made with this key; any other looks the same as none."""
    found = None
    if UUID_PATTERN.fullmatch(uuid):
        found = session.scalar(
            select(Reservation).where(Reservation.uuid == uuid, Reservation.key_id == key.id))
    if found is None:
        raise NotFound("reservation_not_found", "No reservation with that uuid for this key.")
    return found


def status_of(reservation: Reservation | Answered, now: datetime | None = None) -> str:
    """The stored status, or 'expired' already in the seconds before the sweep marks it."""
    if reservation.status in DIALABLE and reservation.expires_at <= (now or utcnow()):
        return "expired"
    return reservation.status
