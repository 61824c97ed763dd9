"""What operators change: publishers, whitelists, credentials, campaigns, targets, keys.

Functions flush but never commit: the caller owns the transaction (rtbctl's
Context.apply commits once per command), and Kamailio hears of a change
only after that commit.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import bid_settings, gateways, notifier, sip_headers, targeting
from app.credentials import ha1, key_hash, new_postback_key
from app.domain_errors import Conflict, Invalid, NotFound
from app.models import (Address, Campaign, Carrier, Number, PostbackKey, Publisher, Subscriber,
                        Target)
from app.phone import InvalidNumber, to_e164
from app.postbacks import message

PUBLISHERS_GROUP = 1
CARRIERS_GROUP = 2
SIP_URI = re.compile(r"^sips?:([^\s@]+@)?[^\s@]+$")
SIP_USERNAME = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
MAX_TTL = 86400


def _get(session: Session, model, ident: int):
    found = session.get(model, ident)
    if found is None:
        raise NotFound("not_found", f"no {model.__name__.lower()} with id {ident}")
    return found


def _insert(session: Session, row, code: str, taken: str):
    """Add a row; a unique key it would break is a Conflict with this code and message."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(code, taken) from None
    return row


def _add_named(session: Session, model, name: str):
    if not name.strip() or len(name) > 128:
        raise Invalid("invalid_name", "a name has 1 to 128 characters")
    return _insert(session, model(name=name.strip()), "name_taken",
                   f"a {model.__name__.lower()} named {name!r} exists")


def add_publisher(session: Session, name: str) -> Publisher:
    return _add_named(session, Publisher, name)


def add_campaign(session: Session, name: str, fallback_sip_uri: str | None = None) -> Campaign:
    row = _add_named(session, Campaign, name)
    return set_fallback(session, row, fallback_sip_uri) if fallback_sip_uri else row


def set_fallback(session: Session, campaign: Campaign | int, sip_uri: str | None) -> Campaign:
    """Where carriers' calls to the campaign's numbers go when they match no reservation."""
    row = campaign if isinstance(campaign, Campaign) else _get(session, Campaign, campaign)
    row.fallback_sip_uri = _sip_uri(sip_uri) if sip_uri else None
    session.flush()
    return row


def _sip_uri(uri: str) -> str:
    if len(uri) > 255 or not SIP_URI.match(uri):
        raise Invalid("invalid_sip_uri", f"{uri!r} is not a SIP URI like sip:buyer@192.0.2.10:5060")
    return uri


def allow_ip(session: Session, publisher_id: int, cidr: str) -> Address:
    """Whitelist a source network for a publisher; Kamailio reloads after commit."""
    _get(session, Publisher, publisher_id)
    return _allow(session, PUBLISHERS_GROUP, f"publisher:{publisher_id}", cidr)


def _allow(session: Session, group: int, tag: str, cidr: str) -> Address:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise Invalid("invalid_cidr", f"{cidr!r} is not an address or network") from None
    same = session.scalar(select(Address).where(
        Address.grp == group, Address.ip_addr == str(network.network_address),
        Address.mask == network.prefixlen))
    if same is not None and same.tag == tag:
        return same
    if same is not None:
        raise Conflict("address_taken", f"{network} is whitelisted for {same.tag} already")
    row = Address(grp=group, ip_addr=str(network.network_address),
                  mask=network.prefixlen, port=0, tag=tag)
    session.add(row)
    session.flush()
    notifier.queue(session, "permissions.addressReload")
    return row


def add_carrier(session: Session, name: str, cidr: str) -> tuple[Carrier, Address]:
    """A carrier whose calls from CIDR are matched to reservations by number and caller ID."""
    carrier = _add_named(session, Carrier, name)
    return carrier, _allow(session, CARRIERS_GROUP, f"carrier:{carrier.id}", cidr)


def add_number(session: Session, number: str, campaign_id: int | None = None) -> Number:
    if campaign_id is not None:
        _get(session, Campaign, campaign_id)
    try:
        number = to_e164(number)
    except InvalidNumber as error:
        raise Invalid("invalid_number", str(error)) from None
    return _insert(session, Number(number=number, campaign_id=campaign_id), "number_taken",
                   f"{number} is in the pool already")


def set_sip_user(session: Session, publisher_id: int, username: str, password: str,
                 realm: str, domain: str) -> Subscriber:
    """Create or re-key a digest user; only HA1 digests are stored, never the password."""
    _get(session, Publisher, publisher_id)
    if not SIP_USERNAME.match(username):
        raise Invalid("invalid_username", "a SIP username is 1-64 of A-Z a-z 0-9 . _ + -")
    if not password:
        raise Invalid("invalid_password", "the password may not be empty")
    row = session.scalar(select(Subscriber).where(Subscriber.username == username).with_for_update())
    if row is None:
        row = Subscriber(username=username, domain=domain, publisher_id=publisher_id)
        session.add(row)
    elif row.publisher_id != publisher_id:
        raise Conflict("username_taken", f"SIP user {username!r} belongs to another publisher")
    row.password = ""
    row.ha1 = ha1(username, realm, password)
    row.ha1b = ha1(f"{username}@{domain}", realm, password)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("username_taken", f"SIP user {username!r} exists") from None
    return row


TARGET_RULES = ("priority", "weight", "concurrency_cap", "hourly_cap", "daily_cap", "monthly_cap",
                "hours", "timezone", "states", "zips", "tag_rules", "enabled")


def _check_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Validate target settings; '' clears hours, states and zips, None clears a cap."""
    unknown = set(rules) - set(TARGET_RULES)
    if unknown:
        raise Invalid("invalid_target", f"unknown settings: {', '.join(sorted(unknown))}")
    for name in ("priority", "weight", "concurrency_cap", "hourly_cap", "daily_cap", "monthly_cap"):
        if rules.get(name) is not None and rules[name] < (1 if name == "weight" else 0):
            raise Invalid("invalid_target", f"{name} may not be below {1 if name == 'weight' else 0}")
    for name in ("hours", "states", "zips"):
        if rules.get(name) == "":
            rules[name] = None
    try:
        if rules.get("hours"):
            targeting.parse_hours(rules["hours"])
        if "timezone" in rules:
            ZoneInfo(rules["timezone"])
    except (ValueError, ZoneInfoNotFoundError) as error:
        raise Invalid("invalid_target", str(error)) from None
    if rules.get("states"):
        codes = [targeting.state_code(s) for s in targeting.split_list(rules["states"])]
        if None in codes:
            raise Invalid("invalid_target", f"unknown US state in {rules['states']!r}")
        rules["states"] = ",".join(codes)
    if rules.get("zips"):
        zips = targeting.split_list(rules["zips"])
        if not all(z.isdigit() and 1 <= len(z) <= 5 for z in zips):
            raise Invalid("invalid_target", "ZIP prefixes are 1 to 5 digits")
        rules["zips"] = ",".join(zips)
    return rules


_NO_DESTINATION = "a target needs --sip-uri, --number with --gateway, or --bid-url"


def add_target(session: Session, campaign_id: int, sip_uri: str | None = None,
               payout: Decimal | None = None, min_seconds: int | None = None,
               **rules: Any) -> Target:
    """A buyer at --sip-uri, or at --number through --gateway, paying --payout;
    or a pass-through one bidding live at --bid-url."""
    _get(session, Campaign, campaign_id)
    if sip_uri is None and rules.get("number") is None and rules.get("bid_url") is None:
        raise Invalid("invalid_target", _NO_DESTINATION)
    if min_seconds is None:
        raise Invalid("invalid_target", "a target needs --min-seconds")
    if rules.get("bid_url") is None and payout is None:
        raise Invalid("invalid_target", "a target with a SIP URI or a number has a --payout")
    row = Target(campaign_id=campaign_id, enabled=True, payout=Decimal(0))
    session.add(row)
    return edit_target(session, row, sip_uri=sip_uri, payout=payout, min_seconds=min_seconds,
                       **rules)


def edit_target(session: Session, target: Target | int, sip_uri: str | None = None,
                payout: Decimal | None = None, min_seconds: int | None = None,
                tag_changes: dict[str, list[str]] | None = None, number: str | None = None,
                gateway: str | None = None, header_changes: list[str] | None = None,
                field_changes: dict[str, str] | None = None, **rules: Any) -> Target:
    """Change what is given; caps and rules apply from the next ping or confirm.

    tag_changes edits the tag rules one name at a time: a name with values
    replaces its rule, a name with none drops it, the others stay; so does
    field_changes the paths a pass-through target's answer is read at; and
    header_changes ('Name: template', or 'Name:' to drop) the SIP headers.
    A new destination (a SIP URI, a number with its gateway, or a bid URL)
    replaces the one before.
    """
    row = target if isinstance(target, Target) else _get(session, Target, target)
    if tag_changes is not None:
        rules["tag_rules"] = _changed_tags(row.tag_rules, tag_changes)
    if header_changes:
        row.sip_headers = sip_headers.changed(row.sip_headers, header_changes)
    if field_changes is not None:
        rules["bid_fields"] = bid_settings.changed_fields(row.bid_fields, field_changes)
    _set_destination(session, row, sip_uri, number, gateway, rules.get("bid_url"))
    if (payout is not None and payout < 0) or (min_seconds is not None and min_seconds < 0):
        raise Invalid("invalid_target", "payout and minimum seconds may not be negative")
    row.payout = row.payout if payout is None else payout
    row.min_seconds = row.min_seconds if min_seconds is None else min_seconds
    bid = bid_settings.check(rules)
    for name, value in {**_check_rules(rules), **bid}.items():
        setattr(row, name, value)
    session.flush()
    return row


def _set_destination(session: Session, row: Target, sip_uri: str | None, number: str | None,
                     gateway: str | None, bid_url: str | None) -> None:
    if sum(value is not None for value in (sip_uri, number, bid_url)) > 1:
        raise Invalid("invalid_target", "a target has one of a SIP URI, a number or a bid URL")
    if gateway == "":
        row.gateway_id = None
    elif gateway is not None:
        # A new target is not ready to flush before the end of edit_target.
        with session.no_autoflush:
            row.gateway_id = gateways.find(session, gateway).id
    if sip_uri is not None:
        row.sip_uri, row.number, row.bid_url = _sip_uri(sip_uri), None, None
    if number is not None:
        try:
            row.number, row.sip_uri, row.bid_url = to_e164(number), None, None
        except InvalidNumber as error:
            raise Invalid("invalid_number", str(error)) from None
    if bid_url is not None:
        # The bid URL itself is checked and set with the other bid settings.
        row.sip_uri = row.number = None
    if row.number is not None and row.gateway_id is None:
        raise Invalid("invalid_target", "a number needs --gateway NAME, the carrier gateway"
                      " that reaches it")
    if row.sip_uri is None and row.number is None and (bid_url or row.bid_url) is None:
        raise Invalid("invalid_target", _NO_DESTINATION)


def set_margin(session: Session, campaign_id: int, margin: str, min_margin: Decimal | None = None,
               allow_loss: bool = False) -> Campaign:
    """What the campaign keeps of a live bid: '20%' of it or '1.50', at least min_margin."""
    row = _get(session, Campaign, campaign_id)
    try:
        value = Decimal(margin.strip().rstrip("%"))
    except ArithmeticError:
        raise Invalid("invalid_margin", f"{margin!r} is not like 20% or 1.50") from None
    percent = margin.strip().endswith("%")
    if value < 0 or (percent and value >= 100) or not value.is_finite() or (
            min_margin is not None and min_margin < 0):
        raise Invalid("invalid_margin", "a margin is 0 to 99.99%, or an amount of 0 or more")
    row.margin_percent, row.margin_amount = (value, None) if percent else (None, value)
    row.min_margin, row.allow_loss = min_margin or Decimal(0), allow_loss
    session.flush()
    return row


def _changed_tags(current: dict[str, list[str]] | None,
                  changes: dict[str, list[str]]) -> dict[str, list[str]] | None:
    rules = dict(current or {})
    for name, values in changes.items():
        rules.pop(name, None)
        if values:
            rules[name] = values
    return rules or None


def list_targets(session: Session, campaign_id: int | None = None) -> list[Target]:
    query = select(Target).order_by(Target.campaign_id, Target.id)
    if campaign_id is not None:
        query = query.where(Target.campaign_id == campaign_id)
    return list(session.scalars(query))


def list_numbers(session: Session) -> list[Number]:
    return list(session.scalars(select(Number).order_by(Number.number)))


KEY_SETTINGS = ("ttl", "inbound_number", "auto_confirm", "duplicate_scope", "rate_limit",
                "require_caller_number", "postback_url")


def add_key(session: Session, campaign_id: int, publisher_id: int,
            **settings: Any) -> tuple[PostbackKey, str]:
    """A new postback key; the key itself is returned once and only its hash is kept.
    Its postback secret is made with it (row.postback_secret, to show once)."""
    _get(session, Campaign, campaign_id)
    _get(session, Publisher, publisher_id)
    key = new_postback_key()
    row = PostbackKey(key_hash=key_hash(key), key_prefix=key[:8], campaign_id=campaign_id,
                      publisher_id=publisher_id, postback_secret=message.new_secret())
    session.add(row)
    return edit_key(session, row, **{"ttl": 60, **settings}), key


def find_key(session: Session, ref: str) -> PostbackKey:
    """A key by its first 8 characters (as `key add` shows them), its id, or the whole key.

    Exactly 8 characters are always a prefix: a hex prefix can be all digits.
    """
    if len(ref) == 8:
        query = select(PostbackKey).where(PostbackKey.key_prefix == ref)
    elif len(ref) > 8:
        query = select(PostbackKey).where(PostbackKey.key_hash == key_hash(ref))
    elif ref.isdigit():
        query = select(PostbackKey).where(PostbackKey.id == int(ref))
    else:
        raise NotFound("not_found", f"{ref!r} is no key id, 8-character prefix or key")
    found = list(session.scalars(query))
    if len(found) != 1:
        raise NotFound("not_found", f"no single key with id or prefix {ref!r}")
    return found[0]


def edit_key(session: Session, key: PostbackKey, new_postback_secret: bool = False,
             **settings: Any) -> PostbackKey:
    """Change the settings given; new_postback_secret replaces the secret that
    signs postbacks (pending ones too) with key.postback_secret, to show once."""
    unknown = set(settings) - set(KEY_SETTINGS)
    if unknown:
        raise Invalid("invalid_key_setting", f"unknown settings: {', '.join(sorted(unknown))}")
    if "ttl" in settings:
        if not 1 <= settings["ttl"] <= MAX_TTL:
            raise Invalid("invalid_ttl", f"the TTL is 1 to {MAX_TTL} seconds")
        key.ttl_seconds = settings.pop("ttl")
    if settings.get("inbound_number"):
        try:
            settings["inbound_number"] = to_e164(settings["inbound_number"])
        except InvalidNumber as error:
            raise Invalid("invalid_inbound_number", str(error)) from None
    if settings.get("duplicate_scope", "key") not in ("key", "campaign"):
        raise Invalid("invalid_key_setting", "the duplicate scope is key or campaign")
    if settings.get("rate_limit") is not None and settings["rate_limit"] < 1:
        raise Invalid("invalid_key_setting", "a rate limit is at least 1 ping a second")
    if "inbound_number" in settings:
        settings["inbound_number"] = settings["inbound_number"] or None
    if settings.get("postback_url"):
        try:
            message.check_template(settings["postback_url"])
        except ValueError as error:
            raise Invalid("invalid_postback_url", str(error)) from None
    if "postback_url" in settings:
        settings["postback_url"] = settings["postback_url"] or None
    if new_postback_secret:
        key.postback_secret = message.new_secret()
    for name, value in settings.items():
        setattr(key, name, value)
    session.flush()
    return key
