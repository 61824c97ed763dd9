"""A ping's live bids: which pass-through targets are asked, and how their
bids rank against the static targets.

The open targets (hours, geo, tags: targeting.open_to) that have room under
their caps are asked; rtb_ping checks the caps again, under its locks, for
the targets it reserves. A campaign without pass-through targets costs
nothing here.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from app import metrics, targeting
from app.bid_answers import Answer, Margin
from app.bid_templates import PingFacts
from app.bidding import Bidder
from app.reservations import DIALABLE

# rtb_ping_once and rtb_confirm_once hold the same test of room, under lock
# (tests/test_shared_rules.py pins the three together).
_ROOM = text("""
SELECT t.id FROM targets t JOIN target_usage u ON u.target_id = t.id
 WHERE t.id IN :ids
   AND (t.concurrency_cap IS NULL OR u.live < t.concurrency_cap)
   AND (t.hourly_cap IS NULL OR u.this_hour < t.hourly_cap)
   AND (t.daily_cap IS NULL OR u.today < t.daily_cap)
   AND (t.monthly_cap IS NULL OR u.this_month < t.monthly_cap)""").bindparams(
    bindparam("ids", expanding=True))
CAPS = ("concurrency_cap", "hourly_cap", "daily_cap", "monthly_cap")
# Whether rtb_ping_once will refuse the ping before it looks at targets: the
# key's rate window spent this second, or (Ping Shield) the caller holding a
# live reservation in the key's scope. It decides, under its locks; this
# only spares the buyers a question whose answer could not be used.
# Sent to the driver as written (pyformat parameters, exec_driver_sql), the
# dialable statuses written in: through a text() clause, compiling its
# parameters cost 0.1 to 0.2 ms more a statement, measured in one thread.
_DIALABLE = ", ".join(f"'{status}'" for status in DIALABLE)
_SETTLED = f"""
SELECT EXISTS (SELECT 1 FROM key_rate_windows WHERE key_id = %(key)s
                  AND window_start = UNIX_TIMESTAMP() AND pings >= %(limit)s)
    OR EXISTS (SELECT 1 FROM caller_reservations c JOIN reservations r ON r.id = c.reservation_id
                WHERE c.scope = %(scope)s AND c.caller_number = %(caller)s
                  AND r.status IN ({_DIALABLE})
                  AND r.expires_at > NOW())"""


def margin_of(target: Any) -> Margin:
    """The campaign's margin, which the ping cache reads with each target."""
    return Margin(target.margin_percent, target.margin_amount, target.min_margin,
                  target.allow_loss)


def with_room(session: Session, targets: list[Any]) -> list[Any]:
    """The targets not full; only those with a cap cost a query, and then one."""
    capped = [t.id for t in targets if any(getattr(t, cap) is not None for cap in CAPS)]
    if not capped:
        return targets
    room = set(session.scalars(_ROOM, {"ids": capped}))
    return [t for t in targets if t.id not in capped or t.id in room]


def settled(session: Session, key: Any, rate_limit: int, caller: str | None) -> bool:
    """rtb_ping will refuse or shield this ping whatever buyers bid."""
    scope = f"k{key.id}" if key.duplicate_scope == "key" else f"c{key.campaign_id}"
    found = session.connection().exec_driver_sql(
        _SETTLED, {"key": key.id, "limit": rate_limit, "scope": scope, "caller": caller or ""})
    return bool(found.scalar())


def bid(session: Session, bidder: Bidder, ranked: list[Any], facts: PingFacts, seconds: float,
        asked: dict[int, Answer], key: Any, rate_limit: int
        ) -> tuple[list[Any], str | None, list[Answer]]:
    """The candidates best first (a buyer that did not bid dropped), or none and
    why, and every answer. `asked` keeps answers across a ping's retries. A
    ping rtb_ping will refuse or shield (settled()) asks no buyer."""
    buyers = [t for t in ranked if t.bid_url]
    if not buyers:
        return ranked, None, []
    spent = settled(session, key, rate_limit, facts.caller_number)
    buyers = [] if spent else with_room(session, buyers)
    # The request keeps its connection while buyers think, in a transaction
    # that has only read (READ COMMITTED: no lock, no snapshot held), which
    # rtb_ping's START TRANSACTION commits. Ending it here cost a COMMIT, a
    # ROLLBACK as the pool took the connection back and a ping as it gave it
    # out again: a twentieth of a pass-through ping's worker time (docs/performance.md).
    fresh = [t for t in buyers if t.id not in asked]
    for answer in bidder.ask(fresh, facts, seconds):
        asked[answer.target_id] = answer
        metrics.BIDS.labels(answer.outcome).inc()
    margin = margin_of(ranked[0])
    answers = [asked[t.id].priced(margin) for t in buyers]
    payouts = {a.target_id: a.payout for a in answers if a.payout is not None}
    kept = [t for t in ranked if not t.bid_url or t.id in payouts]
    if not kept:
        return [], "no_bid" if buyers or spent else "capped", answers
    return targeting.rank(kept, random, payouts), None, answers
