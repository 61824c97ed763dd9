"""rtbctl publisher / campaign / target / key / carrier / number: setting up the market."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import click

from app import admin
from app.cli import Context, emit, json_option, main, password_stdin_option, read_password
from app.models import PostbackKey, Target

CLEAR = object()


class Cap(click.ParamType):
    """A whole number, or 'none' for no cap."""

    name = "N|none"

    def convert(self, value, param, ctx):
        if value is CLEAR or str(value).lower() == "none":
            return CLEAR
        if not str(value).isdigit():
            self.fail(f"{value!r} is not a whole number or 'none'", param, ctx)
        return int(value)


class Rate(click.ParamType):
    """Pings a second, as 'N/s' or 'N', or 'none' for the default limit."""

    name = "N/s|none"

    def convert(self, value, param, ctx):
        if value is CLEAR or str(value).lower() == "none":
            return CLEAR
        match = re.fullmatch(r"(\d+)(/s)?", str(value))
        if not match:
            self.fail(f"{value!r} is not like 10/s", param, ctx)
        return int(match[1])


def _options(*options):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def target_options(required: bool):
    return _options(
        click.option("--sip-uri", help="Where calls go: sip:buyer@192.0.2.10:5060"),
        click.option("--number", help="Or a phone number (E.164), called through --gateway."),
        click.option("--gateway",
                     help="The carrier gateway (`rtbctl gateway add`) for --number; '' none."),
        click.option("--payout", type=Decimal,
                     help="What the publisher earns (with --sip-uri or --number)."),
        click.option("--min-seconds", required=required, type=int, help="Seconds a call must last."),
        click.option("--priority", type=int, help="Among equal payouts, 1 is tried before 2."),
        click.option("--weight", type=int, help="Share among equal payout and priority."),
        click.option("--concurrency-cap", type=Cap(), help="Calls and confirmations at once."),
        click.option("--hourly-cap", type=Cap(), help="Calls an hour (in --timezone)."),
        click.option("--daily-cap", type=Cap(), help="Calls a day."),
        click.option("--monthly-cap", type=Cap(), help="Calls a month."),
        click.option("--hours", help="Open hours, e.g. 'mon-fri 09:00-17:00; sat 10:00-14:00'; '' always."),
        click.option("--timezone", help="Zone of --hours and of the caps' periods, e.g. America/New_York."),
        click.option("--states", help="Callers' US states, e.g. CA,TX; '' any."),
        click.option("--zips", help="Callers' ZIP prefixes, e.g. 902,100; '' any."),
        click.option("--tag", "tags", multiple=True, help="NAME=V1,V2: the ping's tag must be one; NAME= drops it."),
        click.option("--sip-header", "header_changes", multiple=True,
                     help="'X-Publisher-ID: {publisher_id}' on the buyer's INVITE; 'Name:' drops it."),
        click.option("--bid-url", help="Pass-through: ask this URL for a live bid on each ping."),
        click.option("--bid-method", type=click.Choice(["POST", "GET"], case_sensitive=False),
                     help="How the bid URL is asked (default POST)."),
        click.option("--bid-timeout-ms", type=int, help="Milliseconds the buyer has (default 300)."),
        click.option("--bid-body", help="POST body template; '' for the default JSON."),
        click.option("--bid-header", "bid_headers", multiple=True,
                     help="'Name: value' sent with each bid request; replaces them all; '' none."),
        click.option("--max-bid", type=Decimal, help="Bids above this are over_max."),
        click.option("--bid-field", "bid_fields", multiple=True,
                     help="NAME=PATH where the answer holds amount, destination, seconds, id or expires; NAME= the default."),
    )


def _rules(options: dict[str, Any]) -> dict[str, Any]:
    rules = {name: (None if value is CLEAR else value) for name, value in options.items()
             if value is not None and name not in ("tags", "bid_headers", "bid_fields")}
    rules["header_changes"] = list(options.get("header_changes") or [])
    if options.get("bid_headers"):
        rules["bid_headers"] = list(options["bid_headers"])
    if options.get("bid_fields"):
        rules["field_changes"] = {}
        for field in options["bid_fields"]:
            name, sep, path = field.partition("=")
            if not sep or not name:
                raise click.BadParameter(f"{field!r} is not NAME=PATH", param_hint="--bid-field")
            rules["field_changes"][name] = path.strip()
    if options.get("tags"):
        rules["tag_changes"] = {}
        for rule in options["tags"]:
            name, sep, values = rule.partition("=")
            if not sep or not name:
                raise click.BadParameter(f"{rule!r} is not NAME=V1,V2", param_hint="--tag")
            rules["tag_changes"][name] = [v.strip() for v in values.split(",") if v.strip()]
    return rules


def target_json(t: Target) -> dict[str, Any]:
    found = {"id": t.id, "campaign_id": t.campaign_id, "sip_uri": t.sip_uri, "number": t.number,
             "gateway_id": t.gateway_id, "payout": float(t.payout), "min_seconds": t.min_seconds,
             "enabled": t.enabled,
             "priority": t.priority, "weight": t.weight, "concurrency_cap": t.concurrency_cap,
             "hourly_cap": t.hourly_cap, "daily_cap": t.daily_cap, "monthly_cap": t.monthly_cap,
             "hours": t.hours, "timezone": t.timezone, "states": t.states, "zips": t.zips,
             "tags": t.tag_rules,
             "sip_headers": [f"{name}: {template}" for name, template in t.sip_headers or []]}
    if t.bid_url:
        found |= {"bid_url": t.bid_url, "bid_method": t.bid_method,
                  "bid_timeout_ms": t.bid_timeout_ms, "bid_body": t.bid_body,
                  "bid_headers": t.bid_headers, "max_bid": t.max_bid and float(t.max_bid),
                  "bid_fields": t.bid_fields}
    return found


def key_json(k: PostbackKey) -> dict[str, Any]:
    return {"id": k.id, "prefix": k.key_prefix, "campaign_id": k.campaign_id,
            "publisher_id": k.publisher_id, "ttl": k.ttl_seconds,
            "inbound_number": k.inbound_number, "auto_confirm": k.auto_confirm,
            "duplicate_scope": k.duplicate_scope, "rate_limit": k.rate_limit,
            "require_caller_number": k.require_caller_number, "postback_url": k.postback_url}


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
@password_stdin_option
@json_option
@click.pass_obj
def publisher_sip_user(obj: Context, publisher_id: int, username: str, password_stdin: bool,
                       as_json: bool) -> None:
    """Create or re-key a digest user for PUBLISHER_ID; only its HA1 is stored.

    The password is asked for (hidden, twice) or read from standard input.
    """
    password = read_password(password_stdin)
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
@click.option("--fallback-sip-uri", help="Where carriers' calls that match no reservation go.")
@json_option
@click.pass_obj
def campaign_add(obj: Context, name: str, fallback_sip_uri: str | None, as_json: bool) -> None:
    row = obj.apply(admin.add_campaign, name, fallback_sip_uri)
    emit({"id": row.id, "name": row.name, "fallback_sip_uri": row.fallback_sip_uri}, as_json)


@campaign.command("fallback")
@click.argument("campaign_id", type=int)
@click.argument("sip_uri")
@json_option
@click.pass_obj
def campaign_fallback(obj: Context, campaign_id: int, sip_uri: str, as_json: bool) -> None:
    """Send carriers' unmatched calls for the campaign's numbers to SIP_URI ('' refuses them)."""
    row = obj.apply(admin.set_fallback, campaign_id, sip_uri)
    emit({"id": row.id, "name": row.name, "fallback_sip_uri": row.fallback_sip_uri}, as_json)


@campaign.command("margin")
@click.argument("campaign_id", type=int)
@click.argument("margin", metavar="PERCENT%|AMOUNT")
@click.option("--min-margin", type=Decimal, help="Keep at least this much of each live bid.")
@click.option("--allow-loss", is_flag=True, help="Take bids that do not cover the margin (payout 0).")
@json_option
@click.pass_obj
def campaign_margin(obj: Context, campaign_id: int, margin: str, min_margin: Decimal | None,
                    allow_loss: bool, as_json: bool) -> None:
    """What the campaign keeps of a live bid; the publisher's payout is the rest."""
    row = obj.apply(admin.set_margin, campaign_id, margin, min_margin, allow_loss)
    emit({"id": row.id, "name": row.name,
          "margin_percent": None if row.margin_percent is None else float(row.margin_percent),
          "margin_amount": None if row.margin_amount is None else float(row.margin_amount),
          "min_margin": float(row.min_margin), "allow_loss": row.allow_loss}, as_json)


@main.group()
def target() -> None:
    """Targets: buyers' SIP URIs, phone numbers or bid URLs, their caps, hours, rules and headers."""


@target.command("add")
@click.argument("campaign_id", type=int)
@target_options(required=True)
@json_option
@click.pass_obj
def target_add(obj: Context, campaign_id: int, as_json: bool, **options: Any) -> None:
    """A buyer at --sip-uri, or at --number through --gateway, paying --payout; or a
    pass-through one bidding live at --bid-url."""
    row = obj.apply(admin.add_target, campaign_id, **_rules(options))
    emit(target_json(row), as_json)


@target.command("edit")
@click.argument("target_id", type=int)
@target_options(required=False)
@json_option
@click.pass_obj
def target_edit(obj: Context, target_id: int, as_json: bool, **options: Any) -> None:
    """Change the options given; the others stay."""
    emit(target_json(obj.apply(admin.edit_target, target_id, **_rules(options))), as_json)


@target.command("disable")
@click.argument("target_id", type=int)
@json_option
@click.pass_obj
def target_disable(obj: Context, target_id: int, as_json: bool) -> None:
    """Stop offering TARGET_ID to pings and to unconfirmed calls."""
    emit(target_json(obj.apply(admin.edit_target, target_id, enabled=False)), as_json)


@target.command("enable")
@click.argument("target_id", type=int)
@json_option
@click.pass_obj
def target_enable(obj: Context, target_id: int, as_json: bool) -> None:
    emit(target_json(obj.apply(admin.edit_target, target_id, enabled=True)), as_json)


@target.command("list")
@click.argument("campaign_id", type=int, required=False)
@json_option
@click.pass_obj
def target_list(obj: Context, campaign_id: int | None, as_json: bool) -> None:
    with obj.session() as db:
        emit([target_json(t) for t in admin.list_targets(db, campaign_id)], as_json)


def key_options(command):
    return _options(
        click.option("--ttl", type=int, help="Seconds a reservation lives (default 60)."),
        click.option("--inbound-number", help="A static E.164 number to dial instead; '' none."),
        click.option("--auto-confirm/--no-auto-confirm", default=None,
                     help="Confirm (charge caps) at ping time."),
        click.option("--duplicate-scope", type=click.Choice(["key", "campaign"]),
                     help="Where a repeat caller gets their live reservation back."),
        click.option("--rate-limit", type=Rate(),
                     help="Pings a second, e.g. 10/s; none for RTB_DEFAULT_RATE_LIMIT."),
        click.option("--require-caller-number/--allow-no-caller-number", default=None,
                     help="Answer pings without caller_number with 422."),
        click.option("--postback-url", metavar="TEMPLATE",
                     help="Post each call's end here, e.g. https://p.example/cv?id={uuid}&paid={payout};"
                          " '' none."),
    )(command)


def _key_settings(options: dict[str, Any]) -> dict[str, Any]:
    return {name: (None if value is CLEAR else value)
            for name, value in options.items() if value is not None}


@main.group()
def key() -> None:
    """Postback keys: one publisher pinging one campaign."""


@key.command("add")
@click.argument("campaign_id", type=int)
@click.argument("publisher_id", type=int)
@key_options
@json_option
@click.pass_obj
def key_add(obj: Context, campaign_id: int, publisher_id: int, as_json: bool,
            **options: Any) -> None:
    """Make a key; it is shown this once and stored only as a hash. So is the
    secret that signs its postbacks shown once."""
    row, plain = obj.apply(admin.add_key, campaign_id, publisher_id, **_key_settings(options))
    emit({"key": plain, "postback_secret": row.postback_secret, **key_json(row)}, as_json)


@key.command("edit")
@click.argument("key_ref", metavar="KEY_PREFIX_OR_ID")
@key_options
@click.option("--new-postback-secret", is_flag=True,
              help="Sign postbacks with a new secret from now on; it is shown this once.")
@json_option
@click.pass_obj
def key_edit(obj: Context, key_ref: str, new_postback_secret: bool, as_json: bool,
             **options: Any) -> None:
    """Change the settings given; the others stay."""
    def change(db):
        return admin.edit_key(db, admin.find_key(db, key_ref), new_postback_secret,
                              **_key_settings(options))
    row = obj.apply(change)
    shown = {"postback_secret": row.postback_secret} if new_postback_secret else {}
    emit({**key_json(row), **shown}, as_json)


@main.group()
def carrier() -> None:
    """Carriers: who delivers PSTN calls for our numbers."""


@carrier.command("add")
@click.argument("name")
@click.argument("cidr")
@json_option
@click.pass_obj
def carrier_add(obj: Context, name: str, cidr: str, as_json: bool) -> None:
    """Let calls for our numbers in from CIDR (takes effect within a second)."""
    row, address = obj.apply(admin.add_carrier, name, cidr)
    emit({"id": row.id, "name": row.name, "ip_addr": address.ip_addr, "mask": address.mask},
         as_json)


@main.group()
def number() -> None:
    """The pool of inbound numbers carriers deliver to us."""


@number.command("add")
@click.argument("e164")
@click.option("--campaign", "campaign_id", type=int, help="Only for this campaign's reservations.")
@json_option
@click.pass_obj
def number_add(obj: Context, e164: str, campaign_id: int | None, as_json: bool) -> None:
    row = obj.apply(admin.add_number, e164, campaign_id)
    emit({"number": row.number, "campaign_id": row.campaign_id}, as_json)


@number.command("list")
@json_option
@click.pass_obj
def number_list(obj: Context, as_json: bool) -> None:
    with obj.session() as db:
        emit([{"number": n.number, "campaign_id": n.campaign_id, "held_by": n.held_by,
               "held_until": n.held_until} for n in admin.list_numbers(db)], as_json)
