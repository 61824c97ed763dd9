"""rtbctl reservation / reservations / pings / report: what happened."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import click

from app import admin, pings, reports, reservations
from app.cli import Context, emit, json_option, main
from app.models import Reservation

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Since(click.ParamType):
    """How far back: 30m, 1h, 7d."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        match = re.fullmatch(r"(\d+)([smhd])", str(value))
        if not match:
            self.fail(f"{value!r} is not like 30m, 1h or 7d", param, ctx)
        return timedelta(**{_UNITS[match[2]]: int(match[1])})


def reservation_json(r: Reservation) -> dict[str, Any]:
    return {
        "uuid": r.uuid, "status": reservations.status_of(r), "publisher_id": r.publisher_id,
        "campaign_id": r.campaign_id, "target_id": r.target_id, "key_id": r.key_id,
        "caller_number": r.caller_number, "inbound_number": r.inbound_number,
        "payout": float(r.payout), "min_seconds": r.min_seconds, "tags": r.tags,
        "created_at": r.created_at, "expires_at": r.expires_at, "confirmed_at": r.confirmed_at,
        "calls": [{"call_id": c.call_id, "via": c.via, "source": c.source,
                   "target_id": c.target_id, "claimed_at": c.claimed_at,
                   "answered_at": c.answered_at, "ended_at": c.ended_at,
                   "talk_seconds": c.talk_seconds and float(c.talk_seconds),
                   "final_status": c.final_status, "converted": c.converted}
                  for c in r.calls],
    }


@main.group()
def reservation() -> None:
    """One reservation."""


@reservation.command("show")
@click.argument("uuid")
@json_option
@click.pass_obj
def reservation_show(obj: Context, uuid: str, as_json: bool) -> None:
    """A reservation, its calls, and what each pass-through target bid for it."""
    with obj.session() as db:
        found = reports.reservation(db, uuid)
        emit({**reservation_json(found), "bids": reports.bids(db, found)}, as_json)


@main.command("reservations")
@click.option("--status", type=click.Choice(reservations.STATUSES), help="Only these.")
@click.option("--campaign", "campaign_id", type=int, help="Only this campaign's.")
@click.option("--limit", default=50, show_default=True, help="Newest first, at most this many.")
@json_option
@click.pass_obj
def reservations_list(obj: Context, status: str | None, campaign_id: int | None, limit: int,
                      as_json: bool) -> None:
    """Recent reservations, newest first."""
    with obj.session() as db:
        emit([reservation_json(r)
              for r in reports.recent_reservations(db, status, campaign_id, limit)], as_json)


@main.command("pings")
@click.option("--key", "key_ref", metavar="KEY_PREFIX_OR_ID", help="Only this key's pings.")
@click.option("--since", type=Since(), default="1h", show_default=True, help="How far back.")
@click.option("--bids", "by_target", is_flag=True,
              help="Count what pass-through targets answered instead, per target.")
@json_option
@click.pass_obj
def pings_summary(obj: Context, key_ref: str | None, since: timedelta, by_target: bool,
                  as_json: bool) -> None:
    """Why pings were answered as they were: counts by outcome and reason."""
    with obj.session() as db:
        key_ids = [admin.find_key(db, key_ref).id] if key_ref else None
        count = reports.bid_summary if by_target else pings.summary
        emit(count(db, key_ids, reservations.utcnow() - since), as_json)


@main.command("report")
@click.option("--since", type=Since(), default="24h", show_default=True, help="How far back.")
@click.option("--by", type=click.Choice(reports.BY), help="One row per publisher, campaign or target.")
@json_option
@click.pass_obj
def report(obj: Context, since: timedelta, by: str | None, as_json: bool) -> None:
    """Pings, reservations, calls, answered, converted, talk time and payout."""
    with obj.session() as db:
        emit(reports.report(db, reservations.utcnow() - since, by), as_json)
