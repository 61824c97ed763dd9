"""The usage counters caps are decided by, checked and repaired against history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from app.models import PERIODS, Target, target_usage, target_usage_recount

_RECOUNT = text("CALL rtb_usage_recount(:target)")


def drift(session: Session) -> list[dict[str, Any]]:
    """Targets whose counters differ from a recount from history, with both figures.

    One statement, so the counters and the history are read at one moment.
    """
    counted, recounted = target_usage.c, target_usage_recount.c
    rows = session.execute(
        select(counted.target_id, *(counted[p] for p in PERIODS),
               *(recounted[p].label(f"recounted_{p}") for p in PERIODS))
        .join(target_usage_recount, recounted.target_id == counted.target_id)
        .where(or_(*(counted[p] != recounted[p] for p in PERIODS)))
        .order_by(counted.target_id)).mappings().all()
    return [dict(row) for row in rows]


def repair(session: Session) -> int:
    """Rewrite every target's counters from history, one target per transaction
    (rtb_usage_recount locks the target's row): returns how many."""
    targets = session.scalars(select(Target.id).order_by(Target.id)).all()
    session.commit()
    for target in targets:
        session.execute(_RECOUNT, {"target": target})
        session.commit()
    return len(targets)
