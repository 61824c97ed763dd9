"""Carrier gateways: where phone-number targets' calls go, and the digest
credentials the edge answers their challenges with.

The password is kept in the gateways table, which only the app's database
user reads; the edge gets it through rtb_gateway_auth() (schema.sql), for a
call it claimed, when the gateway challenges that call. Nothing here logs
or returns it to print. Functions flush but never commit (as in admin.py).
"""

from __future__ import annotations

import ipaddress
import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain_errors import Conflict, Invalid, NotFound
from app.models import Gateway, Target

NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
_ADDRESS = re.compile(r"^(?P<host>\[[^\]]+\]|[^:\[\]]+)(:(?P<port>\d{1,5}))?$")
USERNAME = re.compile(r"^[A-Za-z0-9._+@-]{1,64}$")
# '+' sends the E.164 number itself; digits (or none) go before its digits.
PREFIX = re.compile(r"^\+?[0-9]{0,15}$")
TRANSPORTS = ("udp", "tcp")
SETTINGS = ("address", "transport", "prefix", "username", "password")


def find(session: Session, name: str) -> Gateway:
    found = session.scalar(select(Gateway).where(Gateway.name == name))
    if found is None:
        raise NotFound("not_found", f"no gateway named {name!r}")
    return found


def add(session: Session, name: str, address: str, **settings: str | None) -> Gateway:
    """A gateway at HOST[:PORT] (5060 by default); settings as edit() takes them."""
    if not NAME.match(name):
        raise Invalid("invalid_name", "a gateway name is 1-64 of A-Z a-z 0-9 . _ -")
    row = Gateway(name=name, port=5060, transport="udp", prefix="+")
    session.add(row)
    try:
        return edit(session, row, address=address, **settings)
    except IntegrityError:
        raise Conflict("name_taken", f"a gateway named {name!r} exists") from None


def edit(session: Session, gateway: Gateway, **settings: str | None) -> Gateway:
    """Change what is given. A username comes with its password (a password
    alone re-keys the username there is); username '' drops the credentials."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise Invalid("invalid_gateway", f"unknown settings: {', '.join(sorted(unknown))}")
    if settings.get("address") is not None:
        gateway.host, gateway.port = parse_address(settings["address"])
    if settings.get("transport") is not None:
        if settings["transport"] not in TRANSPORTS:
            raise Invalid("invalid_gateway", "the transport is udp or tcp")
        gateway.transport = settings["transport"]
    if settings.get("prefix") is not None:
        if not PREFIX.match(settings["prefix"]):
            raise Invalid("invalid_gateway", "a prefix is digits, or '+' (the E.164 number as is)")
        gateway.prefix = settings["prefix"]
    username, password = settings.get("username"), settings.get("password")
    if username is not None or password is not None:
        _set_credentials(gateway, gateway.username if username is None else username, password)
    session.flush()
    return gateway


def _set_credentials(gateway: Gateway, username: str | None, password: str | None) -> None:
    if username == "":
        gateway.username = gateway.password = None
        return
    if username is None:
        raise Invalid("invalid_username", "a password needs --username")
    if not USERNAME.match(username):
        raise Invalid("invalid_username", "a gateway username is 1-64 of A-Z a-z 0-9 . _ + @ -")
    if not password or len(password) > 128 or re.search(r"[\x00-\x1f\x7f]", password):
        raise Invalid("invalid_password", "the password has 1 to 128 characters, none of them"
                      " control characters")
    gateway.username, gateway.password = username, password


def parse_address(address: str) -> tuple[str, int]:
    """'HOST[:PORT]' (an IPv6 address in brackets) to (host as a URI writes it, port)."""
    match = _ADDRESS.match(address.strip())
    host, port = (match["host"], int(match["port"] or 5060)) if match else ("", 0)
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            host = ""
    elif not _HOSTNAME.match(host):
        host = ""
    if not host or not 1 <= port <= 65535:
        raise Invalid("invalid_gateway", f"{address!r} is not HOST[:PORT], like 192.0.2.20:5060")
    return host, port


def remove(session: Session, name: str) -> Gateway:
    """Delete a gateway no target uses."""
    row = find(session, name)
    users = session.scalars(select(Target.id).where(Target.gateway_id == row.id)).all()
    if users:
        raise Conflict("gateway_in_use", f"targets {', '.join(map(str, users))} call through"
                       f" {name}; point them elsewhere first")
    session.delete(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("gateway_in_use", f"a target calls through {name}") from None
    return row


def list_all(session: Session) -> list[Gateway]:
    return list(session.scalars(select(Gateway).order_by(Gateway.name)))
