"""rtbctl: the operator's tool. Every command prints JSON with --json."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

import click
from sqlalchemy import select

from app import admin, reservations
from app.db import make_sessionmaker
from app.errors import ApiError
from app.models import Reservation
from app.settings import Settings, SettingsError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str))
    else:
        for name, value in data.items():
            click.echo(f"{name}: {value}")


class Context:
    def __init__(self):
        self.settings = Settings.from_env()
        self._sessions = None

    def session(self):
        if self._sessions is None:
            self._sessions = make_sessionmaker(self.settings)
        return self._sessions()

    def apply(self, change, *args, **kwargs):
        """Run one change in one transaction; Kamailio is told after the commit."""
        with self.session() as db:
            row = change(db, *args, **kwargs)
            db.commit()
            return row


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operate the RTB router: publishers, campaigns, targets, keys, reservations."""
    try:
        ctx.obj = Context()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


@main.group()
def publisher() -> None:
    """Publishers: who pings and dials."""


@publisher.command("add")
@click.argument("name")
@json_option
@click.pass_obj
def publisher_add(obj: Context, name: str, as_json: bool) -> None:
    row = obj.apply(admin.add_publisher, name)
    emit({"id": row.id, "name": row.name}, as_json)


@publisher.command("allow-ip")
@click.argument("publisher_id", type=int)
@click.argument("cidr")
@json_option
@click.pass_obj
def publisher_allow_ip(obj: Context, publisher_id: int, cidr: str, as_json: bool) -> None:
    """Let calls from CIDR in as PUBLISHER_ID (takes effect within a second)."""
    row = obj.apply(admin.allow_ip, publisher_id, cidr)
    emit({"id": row.id, "publisher_id": publisher_id, "ip_addr": row.ip_addr,
          "mask": row.mask}, as_json)


@publisher.command("sip-user")
@click.argument("publisher_id", type=int)
@click.argument("username")
@click.argument("password")
@json_option
@click.pass_obj
def publisher_sip_user(obj: Context, publisher_id: int, username: str, password: str,
                       as_json: bool) -> None:
    """Create or re-key a digest user for PUBLISHER_ID; only its HA1 is stored."""
    settings = obj.settings
    row = obj.apply(admin.set_sip_user, publisher_id, username, password,
                    realm=settings.sip_realm, domain=settings.sip_domain)
    emit({"id": row.id, "publisher_id": publisher_id, "username": row.username,
          "realm": settings.sip_realm}, as_json)


@main.group()
def campaign() -> None:
    """Campaigns: what publishers ping for."""


@campaign.command("add")
@click.argument("name")
@json_option
@click.pass_obj
def campaign_add(obj: Context, name: str, as_json: bool) -> None:
    row = obj.apply(admin.add_campaign, name)
    emit({"id": row.id, "name": row.name}, as_json)


@main.group()
def target() -> None:
    """Targets: buyers' SIP destinations."""


@target.command("add")
@click.argument("campaign_id", type=int)
@click.option("--sip-uri", required=True, help="Where calls go, e.g. sip:buyer@192.0.2.10:5060")
@click.option("--payout", required=True, type=Decimal, help="What the publisher earns per call.")
@click.option("--min-seconds", required=True, type=int, help="Seconds a call must last to pay.")
@json_option
@click.pass_obj
def target_add(obj: Context, campaign_id: int, sip_uri: str, payout: Decimal, min_seconds: int,
               as_json: bool) -> None:
    row = obj.apply(admin.add_target, campaign_id, sip_uri, payout, min_seconds)
    emit({"id": row.id, "campaign_id": campaign_id, "sip_uri": row.sip_uri,
          "payout": float(row.payout), "min_seconds": row.min_seconds}, as_json)


@main.group()
def key() -> None:
    """Postback keys: one publisher pinging one campaign."""


@key.command("add")
@click.argument("campaign_id", type=int)
@click.argument("publisher_id", type=int)
@click.option("--ttl", default=60, show_default=True, help="Seconds a reservation lives.")
@click.option("--inbound-number", help="A static E.164 number publishers may dial instead.")
@json_option
@click.pass_obj
def key_add(obj: Context, campaign_id: int, publisher_id: int, ttl: int,
            inbound_number: str | None, as_json: bool) -> None:
    """Make a key; it is shown this once and stored only as a hash."""
    row, plain = obj.apply(admin.add_key, campaign_id, publisher_id, ttl, inbound_number)
    emit({"key": plain, "id": row.id, "campaign_id": campaign_id,
          "publisher_id": publisher_id, "ttl": row.ttl_seconds,
          "inbound_number": row.inbound_number}, as_json)


@main.group()
def reservation() -> None:
    """Reservations made by pings."""


@reservation.command("show")
@click.argument("uuid")
@json_option
@click.pass_obj
def reservation_show(obj: Context, uuid: str, as_json: bool) -> None:
    with obj.session() as db:
        row = db.scalar(select(Reservation).where(Reservation.uuid == uuid.lower()))
        if row is None:
            raise ApiError(404, "reservation_not_found", f"no reservation {uuid}")
        emit({
            "uuid": row.uuid, "status": reservations.status_of(row),
            "publisher_id": row.publisher_id, "campaign_id": row.campaign_id,
            "target_id": row.target_id, "key_id": row.key_id,
            "caller_number": row.caller_number, "inbound_number": row.inbound_number,
            "payout": float(row.payout), "min_seconds": row.min_seconds, "tags": row.tags,
            "created_at": row.created_at, "expires_at": row.expires_at,
            "claimed_at": row.claimed_at, "call_id": row.call_id,
            "claimed_from": row.claimed_from,
        }, as_json)


def run() -> None:
    """Console entry point: operator mistakes print one line, not a traceback."""
    try:
        main(standalone_mode=False)
    except ApiError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RuntimeError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
