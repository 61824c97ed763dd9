"""The admin pages: thin handlers that read the request, ask app/inbounds.py
or queries.py, and render a template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import render_template, request

from app import inbounds
from app.api import session
from app.console import charts, queries
from app.console.blueprint import bp
from app.reservations import utcnow

LOG_FIELDS = ("key", "campaign", "publisher", "outcome", "reason", "start", "end")


def _number(name: str, problems: list[str]) -> list[int]:
    raw = request.args.get(name, "").strip()
    if not raw:
        return []
    if not raw.isdigit() or len(raw) > 10:
        problems.append(f"{name} must be a whole number")
        return []
    return [int(raw)]


def _moment(name: str, problems: list[str]) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        problems.append(f"{name} must be a time such as 2026-11-30T08:00 (UTC)")
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def log_filters(problems: list[str]) -> inbounds.Filters:
    words = {name: request.args.get(name, "").strip() for name in ("outcome", "reason")}
    return inbounds.Filters(
        campaign_ids=_number("campaign", problems), publisher_ids=_number("publisher", problems),
        start=_moment("start", problems), end=_moment("end", problems),
        key_ids=_number("key", problems),
        outcomes=[words["outcome"]] if words["outcome"] else [],
        reasons=[words["reason"][:32]] if words["reason"] else [])


@bp.get("/log")
def log():
    problems: list[str] = []
    filters = log_filters(problems)
    before = request.args.get("before", "")
    rows, following = ([], None) if problems else inbounds.page(
        session(), filters, int(before) if before.isdigit() and len(before) < 20 else None)
    asked = {name: request.args[name] for name in LOG_FIELDS if request.args.get(name)}
    return render_template("log.html", rows=rows, following=following, asked=asked,
                           problems=problems, outcomes=queries.OUTCOMES)


@bp.get("/reservations/<uuid>")
def reservation(uuid: str):
    return render_template("reservation.html", **queries.reservation_page(session(), uuid))


@bp.get("/targets")
def targets():
    campaign = request.args.get("campaign", "")
    rows = queries.targets_page(session(), int(campaign) if campaign.isdigit() else None)
    return render_template("targets.html", rows=rows)


def _buckets(now: datetime, count: int, size: timedelta, pattern: str) -> list[str]:
    return [(now - size * i).strftime(pattern) for i in reversed(range(count))]


@bp.get("/")
def dashboard():
    db, now = session(), utcnow()
    minutes = _buckets(now, 60, timedelta(minutes=1), "%Y-%m-%d %H:%M")
    per_minute = queries.pings_per_minute(db, now)
    pings = charts.stacked(minutes, {o: [per_minute.get((m, o), 0) for m in minutes]
                                     for o in queries.OUTCOMES})
    hours = _buckets(now, 24, timedelta(hours=1), "%Y-%m-%d %H:00")
    by_hour = {row.at: row for row in queries.calls_since(db, now - timedelta(days=1))}
    figures = ("calls", "answers", "conversions")
    calls = charts.grouped(hours, {f: [getattr(by_hour[h], f) if h in by_hour else 0
                                       for h in hours] for f in figures})
    payout = charts.grouped(hours, {"payout": [float(by_hour[h].payout) if h in by_hour else 0
                                               for h in hours]})
    last_hour = queries.calls_since(db, now - timedelta(hours=1), bucket=queries.whole)
    totals = {"last hour": _sum(last_hour, (*figures, "payout")),
              "last day": _sum(by_hour.values(), (*figures, "payout"))}
    return render_template("dashboard.html", pings=pings, calls=calls, payout=payout,
                           totals=totals, now=now)


def _sum(rows, figures) -> dict[str, float]:
    return {f: sum(getattr(row, f) or 0 for row in rows) for f in figures}
