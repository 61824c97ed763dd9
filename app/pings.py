"""A ping from start to answer, and the ping log: what each ping answered and why.

Python parses the ping, works out the caller's place and the targets open to
them (from the worker's PingCache), asks the open pass-through targets for
live bids (auction.py), and rtb_ping (schema.sql) does the rest
in one call: the key, its rate window, Ping Shield, caps, the reservation,
its pool number, the ping-log row; then the worker commits.
"""

from __future__ import annotations

import json
import random
import time
import uuid as uuidlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from app import auction, notifier, reservations, sip_headers, targeting
from app.bid_answers import Answer
from app.bid_templates import PingFacts
from app.bidding import Bidder
from app.db import one_called
from app.domain_errors import DomainError, Invalid, RateLimited
from app.models import Call, Ping, PingDay, PostbackKey, Reservation
from app.ping_cache import PingCache
from app.reservations import Answered, Rejection, Reserved
from app.settings import PingLimits

# Sent to the driver as written (exec_driver_sql, see auction._SETTLED).
_PING = ("CALL rtb_ping(%(key)s, %(version)s, %(uuid)s, %(caller)s, %(tags)s, %(candidates)s, "
         "%(reason)s, %(error)s, %(rate)s, %(numbers)s, %(elapsed)s, %(bids)s)")
# Answers 'stale' in a row before a ping gives up: each means an edit to a key
# or a target committed between the cache's reading and the ping.
STALE_TRIES = 3


def ping(session: Session, cache: PingCache, bidder: Bidder, raw_key: str | None,
         caller_number: str | None, tags: dict[str, Any], started: float,
         limits: PingLimits = PingLimits()) -> Reserved | Rejection:
    """Reserve (and, for auto-confirm keys, confirm) and log the ping: one call, then commit."""
    asked: dict[int, Answer] = {}
    for _ in range(STALE_TRIES):
        key, targets, version = cache.lookup(session, raw_key)
        try:
            check_tags(tags, limits)
            caller, error = reservations.normalise_caller(caller_number, key), None
        except DomainError as refused:
            caller, error = None, refused
        uuid, place = str(uuidlib.uuid4()), targeting.caller_of(caller, tags)
        ranked, reason = ([], None) if error else targeting.open_to(
            targets, place, datetime.now(UTC), random)
        answers: list[Answer] = []
        if ranked:
            facts = PingFacts(uuid, caller, place.state, place.zip, key.publisher_id,
                              key.campaign_id, tags)
            left = limits.bid_deadline_ms / 1000 - (time.perf_counter() - started)
            ranked, reason, answers = auction.bid(session, bidder, ranked, facts, left, asked,
                                                  key, key.rate_limit or limits.rate_limit)
        row = one_called(session.connection().exec_driver_sql(_PING, {
            "key": key.id, "version": version, "uuid": uuid,
            "caller": caller, "tags": json.dumps(tags),
            "candidates": ",".join(str(t.id) for t in ranked), "reason": reason,
            "error": error and error.code, "rate": limits.rate_limit,
            "numbers": limits.held_numbers,
            "elapsed": round((time.perf_counter() - started) * 1000, 3),
            "bids": json.dumps([a.as_json() for a in answers]) if answers else None}))
        if row.outcome == "stale":
            cache.forget()
            continue
        found = json.loads(row.reservation, parse_float=Decimal)
        made = _reservation(found) if found["id"] is not None else None
        if row.outcome in ("reserved", "confirmed"):
            _keep_headers(session, found["id"], ranked, sip_headers.Values(
                uuid, key.publisher_id, key.campaign_id, caller, place.state, place.zip, tags))
            notifier.queue(session, "htable.setxs", "rsv", made.uuid,
                           reservations.htable_value(made),
                           key.ttl_seconds + reservations.HTABLE_GRACE)
        # rtb_ping leaves its transaction to us: the reservation is committed
        # (and Kamailio told) only by a worker alive to answer with it, and
        # the log row of a refused ping with it.
        session.commit()
        return _answer(row, made, key, error, limits)
    raise RuntimeError(f"keys or targets changed under {STALE_TRIES} pings in a row")


def _keep_headers(session: Session, reservation_id: int, candidates: list[Row],
                  values: sip_headers.Values) -> None:
    """Each candidate's SIP headers, rendered for this caller, on the new
    reservation, in the transaction rtb_ping left open."""
    rendered = sip_headers.for_candidates(candidates, values)
    if rendered:
        session.execute(update(Reservation).where(Reservation.id == reservation_id)
                        .values(sip_headers=rendered))


def _answer(row: Row, made: Answered | None, key: PostbackKey, error: DomainError | None,
            limits: PingLimits) -> Reserved | Rejection:
    if row.outcome == "rejected":
        return Rejection(row.reason)
    if row.outcome != "error":
        return Reserved(made, shielded=row.outcome == "duplicate")
    if row.reason == "invalid_key":
        raise reservations.unknown_key()
    if row.reason == "rate_limited":
        limit = key.rate_limit or limits.rate_limit
        raise RateLimited("rate_limited", f"This key may ping {limit} times a second.",
                          retry_after=1)
    raise error


def _reservation(found: dict[str, Any]) -> Answered:
    """The reservation rtb_ping answered with (its JSON), and its latest call, to shape the answer."""
    call = found["call"]
    calls = [] if call["via"] is None else [Call(
        via=call["via"], claimed_at=_moment(call["claimed_at"]),
        answered_at=_moment(call["answered_at"]), ended_at=_moment(call["ended_at"]),
        talk_seconds=call["talk_seconds"], final_status=call["final_status"],
        converted=bool(call["converted"]))]
    return Answered(found["uuid"], found["status"], Decimal(found["payout"]),
                    found["min_seconds"], found["inbound_number"], _moment(found["expires_at"]),
                    found["caller_number"], found["publisher_id"], calls)


def _moment(text: str | None) -> datetime | None:
    """A time as MariaDB writes one into JSON, UTC without a zone, as the columns read."""
    return None if text is None else datetime.fromisoformat(text)


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
