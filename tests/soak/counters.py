"""The soak's totals, from the database and from what the clients saw."""

from __future__ import annotations

from collections import Counter

from app import usage
from tests.polling import eventually
from tests.private_stack import PrivateStack
from tests.soak.load import Record

# Calls whose end Kamailio has not recorded yet (a retry may be pending).
OPEN_CALLS = "SELECT COUNT(*) FROM calls WHERE answered_at IS NOT NULL AND ended_at IS NULL"
COMPLETED = ("SELECT r.uuid FROM calls c JOIN reservations r ON r.id = c.reservation_id "
             "WHERE c.answered_at IS NOT NULL AND c.ended_at IS NOT NULL")
CONNECTED_TWICE = ("SELECT r.uuid FROM calls c JOIN reservations r ON r.id = c.reservation_id "
                   "WHERE c.answered_at IS NOT NULL GROUP BY r.id HAVING COUNT(*) > 1")


def totals(stack: PrivateStack, record: Record) -> dict[str, int]:
    """lost: calls a caller saw complete (200, then 200 to its BYE) without a
    completed call record; double_claims: reservations connected more than
    once, by the records or by the callers; overbooked: targets seen over a
    cap; errors_5xx: HTTP answers 5xx, or none at all; counter_drift: targets
    whose usage counters differ from a recount from history."""
    eventually(lambda: stack.rows(OPEN_CALLS)[0][0] == 0, 20, interval=0.5)
    recorded = {uuid for (uuid,) in stack.rows(COMPLETED)}
    seen_twice = {uuid for uuid, n in Counter(record.completed).items() if n > 1}
    twice = {uuid for (uuid,) in stack.rows(CONNECTED_TWICE)} | seen_twice
    with stack.sessions() as db:
        drifted = usage.drift(db)
    [(calls, completed)] = stack.rows(
        "SELECT COUNT(*), SUM(answered_at IS NOT NULL AND ended_at IS NOT NULL) FROM calls")
    return {
        "pings": record.pings,
        "reservations": len(record.reserved),
        "calls": calls,
        "completed": int(completed or 0),
        "lost": len(set(record.completed) - recorded),
        "double_claims": len(twice),
        "overbooked": len(record.over_cap),
        "errors_5xx": len(record.errors_5xx),
        "counter_drift": len(drifted),
    }


MUST_BE_ZERO = ("lost", "double_claims", "overbooked", "errors_5xx", "counter_drift")


def report(counts: dict[str, int], record: Record) -> str:
    lines = [
        f"pings sent            {counts['pings']}",
        f"reservations          {counts['reservations']} (confirmed by PUT: {record.confirms})",
        f"dials                 {record.dials} (completed as the callers saw it: "
        f"{len(record.completed)})",
        f"calls relayed         {counts['calls']}",
        f"calls completed       {counts['completed']}",
        *([f"answers {sorted(record.tolerated)} (failover) {record.tolerated_answers}"]
          if record.tolerated else []),
        *(f"{name:<22}{counts[name]}" for name in MUST_BE_ZERO),
        *(f"  {error}" for error in record.errors_5xx[:10]),
        "soak: " + " ".join(f"{name}={value}" for name, value in counts.items()),
    ]
    return "\n".join(lines)
