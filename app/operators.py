"""Operator accounts: the people who run this instance and may read all of it
(the owner's log over HTTP, the admin pages), never a publisher's key.

A password is stored as werkzeug's salted scrypt hash, slow on purpose. An API
token is random, shown once and stored as its SHA-256: with 256 bits of
entropy nobody guesses one, so a fast digest is enough, and a request is
checked with one indexed lookup. Functions flush; the caller commits.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.credentials import key_hash
from app.domain_errors import Conflict, Invalid, NotFound, Unauthenticated
from app.models import Operator

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10
# Tells an operator's token from a publisher's hex key at a glance.
TOKEN_PREFIX = "rtbop_"


def add(session: Session, name: str, password: str) -> Operator:
    if not NAME.match(name):
        raise Invalid("invalid_name", "an operator name is 1-64 of A-Z a-z 0-9 . _ @ -")
    if len(password) < MIN_PASSWORD:
        raise Invalid("invalid_password", f"a password has at least {MIN_PASSWORD} characters")
    row = Operator(name=name, password_hash=generate_password_hash(password, "scrypt"))
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("name_taken", f"an operator named {name!r} exists") from None
    return row


def issue_token(session: Session, name: str) -> str:
    """A new API token for the operator; the one before it stops working."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    done = session.execute(update(Operator).where(Operator.name == name)
                           .values(token_hash=key_hash(token)))
    if done.rowcount != 1:
        raise NotFound("not_found", f"no operator named {name!r}")
    return token


def by_token(session: Session, token: str | None) -> Operator:
    if not token:
        raise Unauthenticated("missing_token",
                              "Send an operator's API token: Authorization: Bearer <token>.")
    found = session.scalar(select(Operator).where(Operator.token_hash == key_hash(token)))
    if found is None:
        raise Unauthenticated("invalid_token", "That API token is not known.")
    return found
