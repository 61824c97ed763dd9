"""What operators change: publishers, whitelists, credentials, campaigns, targets, keys."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import notifier
from app.credentials import ha1, key_hash, new_postback_key
from app.errors import ApiError
from app.models import Address, Campaign, PostbackKey, Publisher, Subscriber, Target
from app.phone import InvalidNumber, to_e164

PUBLISHERS_GROUP = 1
SIP_URI = re.compile(r"^sips?:([^\s@]+@)?[^\s@]+$")
SIP_USERNAME = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
MAX_TTL = 86400


def _get(session: Session, model, ident: int):
    found = session.get(model, ident)
    if found is None:
        raise ApiError(404, "not_found", f"no {model.__name__.lower()} with id {ident}")
    return found


def _add_named(session: Session, model, name: str):
    if not name.strip() or len(name) > 128:
        raise ApiError(422, "invalid_name", "a name has 1 to 128 characters")
    row = model(name=name.strip())
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise ApiError(409, "name_taken", f"a {model.__name__.lower()} named {name!r} exists") from None
    return row


def add_publisher(session: Session, name: str) -> Publisher:
    return _add_named(session, Publisher, name)


def add_campaign(session: Session, name: str) -> Campaign:
    return _add_named(session, Campaign, name)


def allow_ip(session: Session, publisher_id: int, cidr: str) -> Address:
    """Whitelist a source network for a publisher; Kamailio reloads after commit."""
    _get(session, Publisher, publisher_id)
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ApiError(422, "invalid_cidr", f"{cidr!r} is not an address or network") from None
    row = Address(grp=PUBLISHERS_GROUP, ip_addr=str(network.network_address),
                  mask=network.prefixlen, port=0, tag=f"publisher:{publisher_id}")
    session.add(row)
    session.flush()
    notifier.queue(session, "permissions.addressReload")
    return row


def set_sip_user(session: Session, publisher_id: int, username: str, password: str,
                 realm: str, domain: str) -> Subscriber:
    """Create or re-key a digest user; only HA1 digests are stored, never the password."""
    _get(session, Publisher, publisher_id)
    if not SIP_USERNAME.match(username):
        raise ApiError(422, "invalid_username", "a SIP username is 1-64 of A-Z a-z 0-9 . _ + -")
    if not password:
        raise ApiError(422, "invalid_password", "the password may not be empty")
    row = session.scalar(select(Subscriber).where(Subscriber.username == username).with_for_update())
    if row is None:
        row = Subscriber(username=username, domain=domain, publisher_id=publisher_id)
        session.add(row)
    elif row.publisher_id != publisher_id:
        raise ApiError(409, "username_taken", f"SIP user {username!r} belongs to another publisher")
    row.password = ""
    row.ha1 = ha1(username, realm, password)
    row.ha1b = ha1(f"{username}@{domain}", realm, password)
    try:
        session.flush()
    except IntegrityError:
        raise ApiError(409, "username_taken", f"SIP user {username!r} exists") from None
    return row


def add_target(session: Session, campaign_id: int, sip_uri: str, payout: Decimal,
               min_seconds: int) -> Target:
    _get(session, Campaign, campaign_id)
    if len(sip_uri) > 255 or not SIP_URI.match(sip_uri):
        raise ApiError(422, "invalid_sip_uri",
                       f"{sip_uri!r} is not a SIP URI like sip:buyer@192.0.2.10:5060")
    if payout < 0 or min_seconds < 0:
        raise ApiError(422, "invalid_target", "payout and minimum seconds may not be negative")
    row = Target(campaign_id=campaign_id, sip_uri=sip_uri, payout=payout,
                 min_seconds=min_seconds, enabled=True)
    session.add(row)
    session.flush()
    return row


def add_key(session: Session, campaign_id: int, publisher_id: int, ttl: int = 60,
            inbound_number: str | None = None) -> tuple[PostbackKey, str]:
    """A new postback key; the key itself is returned once and only its hash is kept."""
    _get(session, Campaign, campaign_id)
    _get(session, Publisher, publisher_id)
    if not 1 <= ttl <= MAX_TTL:
        raise ApiError(422, "invalid_ttl", f"the TTL is 1 to {MAX_TTL} seconds")
    if inbound_number is not None:
        try:
            inbound_number = to_e164(inbound_number)
        except InvalidNumber as error:
            raise ApiError(422, "invalid_inbound_number", str(error)) from None
    key = new_postback_key()
    row = PostbackKey(key_hash=key_hash(key), key_prefix=key[:8], campaign_id=campaign_id,
                      publisher_id=publisher_id, ttl_seconds=ttl, inbound_number=inbound_number)
    session.add(row)
    session.flush()
    return row, key
