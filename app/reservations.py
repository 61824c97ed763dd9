"""Pings become reservations; confirming and reading them. Functions take a Session.

reserve() flushes but never commits: pings.ping() owns the ping's
transaction. confirm() commits the caller's session first and then lets
rtb_confirm() commit on a connection of its own.
"""

from __future__ import annotations

import random
import re
import time
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, or_, select, text
from sqlalchemy.orm import Session

from app import notifier, targeting
from app.credentials import key_hash
from app.domain_errors import Invalid, NotFound, RateLimited, Unauthenticated
from app.models import (CallerReservation, KeyRateWindow, Number, PostbackKey, Reservation,
                        Target, target_usage)
from app.phone import InvalidNumber, to_e164
from app.settings import PingLimits

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
# Reservations a carrier's call could still be for, or is for.
ON_A_NUMBER = ("reserved", "confirmed", "claimed")
CANDIDATES_MAX = 255
CONFIRMED_FIELDS = ["status", "target_id", "payout", "min_seconds", "confirmed_at"]
_UPSERT_WINDOW = text(
    "INSERT INTO key_rate_windows (key_id, window_start, pings) VALUES (:key, :window, 1) "
    "ON DUPLICATE KEY UPDATE pings = IF(window_start = VALUES(window_start), pings + 1, 1), "
    "window_start = VALUES(window_start)")
_LOCK_CALLER = text(
    "INSERT INTO caller_reservations (scope, caller_number) VALUES (:scope, :caller) "
    "ON DUPLICATE KEY UPDATE scope = scope")


@dataclass(frozen=True)
class Rejection:
    reason: str


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    shielded: bool = False


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def authenticate(session: Session, key: str | None) -> PostbackKey:
    if not key:
        raise Unauthenticated("missing_key", "Send your postback key as `key`.")
    found = session.scalar(select(PostbackKey).where(PostbackKey.key_hash == key_hash(key)))
    if found is None:
        raise Unauthenticated("invalid_key", "That postback key is not known.")
    return found


def normalise_caller(raw: str | None, key: PostbackKey) -> str | None:
    if raw is None or raw == "":
        if key.require_caller_number:
            raise Invalid("missing_caller_number", "This key requires `caller_number`.")
        return None
    try:
        return to_e164(raw)
    except InvalidNumber as error:
        raise Invalid("invalid_caller_number", str(error)) from None


def check_rate(session: Session, key: PostbackKey, default_limit: int) -> None:
    """Count this ping in the key's current second; the row lock keeps the count exact.

    A key without a limit of its own has the default one.
    """
    limit = key.rate_limit or default_limit
    session.execute(_UPSERT_WINDOW, {"key": key.id, "window": int(time.time())})
    if session.get(KeyRateWindow, key.id, populate_existing=True).pings > limit:
        raise RateLimited("rate_limited", f"This key may ping {limit} times a second.",
                          retry_after=1)


def _shield(session: Session, key: PostbackKey, caller: str) -> CallerReservation:
    """The caller's row in the key's (or campaign's) scope, locked until commit."""
    scope = f"k{key.id}" if key.duplicate_scope == "key" else f"c{key.campaign_id}"
    return _caller_row(session, scope, caller)


def _caller_row(session: Session, scope: str, caller: str) -> CallerReservation:
    """A caller's row in a scope (a key, a campaign or a number), locked until commit."""
    session.execute(_LOCK_CALLER, {"scope": scope, "caller": caller})
    return session.scalars(
        select(CallerReservation)
        .where(CallerReservation.scope == scope, CallerReservation.caller_number == caller)
        .with_for_update().execution_options(populate_existing=True)).one()


def _eligible(session: Session, campaign_id: int) -> tuple[list[Row], dict[int, targeting.Usage]]:
    """The campaign's enabled targets with their usage, as plain rows: bidding only
    reads them, and rows cost a fraction of ORM objects on every ping."""
    targets = Target.__table__
    rows = session.execute(
        select(targets, target_usage.c.live, target_usage.c.this_hour, target_usage.c.today,
               target_usage.c.this_month)
        .join(target_usage, target_usage.c.target_id == targets.c.id)
        .where(targets.c.campaign_id == campaign_id, targets.c.enabled.is_(True))
    ).all()
    return rows, {r.id: targeting.Usage(r.live, r.this_hour, r.today, r.this_month) for r in rows}


def _candidates(ranked: list[Row]) -> str:
    ids = ""
    for target in ranked:
        more = f"{ids},{target.id}" if ids else str(target.id)
        if len(more) > CANDIDATES_MAX:
            break
        ids = more
    return ids


def reserve(session: Session, key: PostbackKey, caller_number: str | None, tags: dict[str, Any],
            limits: PingLimits = PingLimits(), rng: random.Random | None = None
            ) -> Reserved | Rejection:
    """Reserve the best eligible target for this caller, or say why none.

    A caller with a live reservation in the key's duplicate scope gets that
    one back, from the same publisher only: another publisher is told
    `duplicate` and nothing of it. Kamailio hears of a new reservation after commit.
    """
    check_rate(session, key, limits.rate_limit)
    shield = _shield(session, key, caller_number) if caller_number else None
    if shield is not None and shield.reservation_id is not None:
        earlier = session.get(Reservation, shield.reservation_id)
        live = earlier.status in DIALABLE and earlier.expires_at > utcnow()
        if live and earlier.publisher_id == key.publisher_id:
            return Reserved(earlier, shielded=True)
        if live or earlier.status == "claimed":
            return Rejection("duplicate")
    targets, usage = _eligible(session, key.campaign_id)
    caller = targeting.caller_of(caller_number, tags)
    ranked, reason = targeting.choose(targets, usage, caller, datetime.now(UTC), rng or random)
    if reason:
        return Rejection(reason)
    best, now = ranked[0], utcnow()
    reservation = Reservation(
        uuid=str(uuidlib.uuid4()), key_id=key.id, publisher_id=key.publisher_id,
        campaign_id=key.campaign_id, target_id=best.id, caller_number=caller_number,
        payout=best.payout, min_seconds=best.min_seconds,
        inbound_number=key.inbound_number, tags=tags, status="reserved",
        candidates=_candidates(ranked), created_at=now,
        expires_at=now + timedelta(seconds=key.ttl_seconds),
        # A new reservation has no calls: saying so saves the answer a SELECT.
        calls=[],
    )
    session.add(reservation)
    session.flush()
    if shield is not None:
        shield.reservation_id = reservation.id
    # Set only when a pool number is found: assigning None would cost an UPDATE.
    number = None if key.inbound_number else _pool_number(session, key, reservation,
                                                         limits.held_numbers)
    if number:
        reservation.inbound_number = number
    notifier.queue(session, "htable.setxs", "rsv", reservation.uuid, htable_value(reservation),
                   key.ttl_seconds + HTABLE_GRACE)
    return Reserved(reservation)


def _live(session: Session, reservation_id: int | None) -> bool:
    earlier = session.get(Reservation, reservation_id) if reservation_id else None
    return earlier is not None and earlier.status in ON_A_NUMBER and earlier.expires_at > utcnow()


def _pool_number(session: Session, key: PostbackKey, reservation: Reservation,
                 most: int) -> str | None:
    """A pool number a carrier's call can be matched by, or None when none is free
    or the key's live reservations hold `most` already.

    With a caller number: a number not held, that no other live reservation
    shares with this caller (a call is matched by number plus caller ID);
    the number's row is read under a shared lock and the (number, caller)
    row locked, so sharers do not wait for each other. Without: a number no
    live reservation uses, held for this one alone until it expires, under
    the number row's exclusive lock. Numbers are taken in a fixed order, so
    these locks cannot deadlock.
    """
    now = utcnow()
    pool = session.scalars(
        select(Number.number)
        .where(or_(Number.campaign_id == key.campaign_id, Number.campaign_id.is_(None)))
        .order_by(Number.campaign_id.is_(None), Number.number)).all()
    if not pool or _holding(session, key, now) >= most:
        return None
    for number in pool:
        row = session.scalars(
            select(Number).where(Number.number == number)
            .with_for_update(read=reservation.caller_number is not None)
            .execution_options(populate_existing=True)).one()
        if row.held_until is not None and row.held_until > now:
            continue
        if reservation.caller_number:
            match = _caller_row(session, f"n{number}", reservation.caller_number)
            if _live(session, match.reservation_id):
                continue
            match.reservation_id = reservation.id
            return number
        in_use = session.scalar(select(func.count()).where(
            Reservation.inbound_number == number, Reservation.status.in_(ON_A_NUMBER),
            Reservation.expires_at > now))
        if not in_use:
            row.held_by, row.held_until = reservation.id, reservation.expires_at
            return number
    return None


def _holding(session: Session, key: PostbackKey, now: datetime) -> int:
    """How many pool numbers the key's live reservations hold. Racing pings
    of one key count in turn: check_rate() locked the key's rate window row
    until commit (locking the key's own row here could deadlock with the
    foreign key check of that row's first insert)."""
    return session.scalar(select(func.count()).where(
        Reservation.key_id == key.id, Reservation.inbound_number.is_not(None),
        Reservation.status.in_(ON_A_NUMBER), Reservation.expires_at > now))


def htable_value(reservation: Reservation) -> str:
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


def status_of(reservation: Reservation, now: datetime | None = None) -> str:
    """The stored status, or 'expired' already in the seconds before the sweep marks it."""
    if reservation.status in DIALABLE and reservation.expires_at <= (now or utcnow()):
        return "expired"
    return reservation.status
