"""What a postback says and how: its fields, the URL a key's template makes
of them, the signed JSON body, and the wait before each retry. Pure logic."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

TOKEN = re.compile(r"\{([^{}]*)\}")
FIELDS = ("uuid", "status", "payout", "talk_seconds", "converted", "caller_number")
MAX_TEMPLATE = 2048
SECRET_BYTES = 32
LONGEST_WAIT = 3600


@dataclass(frozen=True)
class CallEnd:
    """A call's end as its postback tells it; payout is what the call earned."""

    postback_id: int
    uuid: str
    answered: bool
    payout: Decimal
    talk_seconds: Decimal | None
    converted: bool
    caller_number: str | None
    tags: dict[str, Any]


def new_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def fields(end: CallEnd) -> dict[str, Any]:
    """The JSON body's fields: the template's tokens, the tags and the postback's id."""
    return {"id": end.postback_id, "uuid": end.uuid,
            "status": "completed" if end.answered else "failed",
            "payout": float(end.payout),
            "talk_seconds": None if end.talk_seconds is None else float(end.talk_seconds),
            "converted": end.converted, "caller_number": end.caller_number, "tags": end.tags}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _token_text(end: CallEnd, name: str) -> str:
    if name.startswith("tag:"):
        return _text(end.tags.get(name[4:]))
    if name == "payout":
        return f"{end.payout:.2f}"
    if name == "talk_seconds":
        return _text(end.talk_seconds)
    return _text(fields(end)[name])


def url(template: str, end: CallEnd) -> str:
    """The template with each token replaced by its value, URL-encoded whole
    (a value cannot add a path, a query or a host)."""
    return TOKEN.sub(lambda m: quote(_token_text(end, m[1]), safe=""), template)


def check_template(template: str) -> str:
    """The template, or ValueError saying what is wrong with it."""
    if len(template) > MAX_TEMPLATE:
        raise ValueError(f"a postback URL has at most {MAX_TEMPLATE} characters")
    unknown = [m[0] for m in TOKEN.finditer(template)
               if m[1] not in FIELDS and not (m[1].startswith("tag:") and len(m[1]) > 4)]
    if unknown:
        raise ValueError(f"unknown token {unknown[0]}; tokens are "
                         + ", ".join(f"{{{name}}}" for name in FIELDS) + " and {tag:NAME}")
    check_url(TOKEN.sub("x", template))
    return template


def check_url(address: str) -> str:
    """An http(s) URL with a host, or ValueError."""
    if any(c.isspace() or ord(c) < 32 for c in address):
        raise ValueError("a postback URL may not hold spaces or control characters")
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        raise ValueError(f"{address!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(f"{address!r} is not an http:// or https:// URL with a host")
    return address


def body(end: CallEnd) -> bytes:
    return json.dumps(fields(end), separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, signed: bytes) -> str:
    """X-RTB-Signature's value: HMAC-SHA256 of the body, keyed with the secret as printed."""
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def retry_wait(attempts: int, first_wait: int) -> int:
    """Seconds to wait after the attempts-th failure: first_wait, doubling, at most an hour."""
    return min(first_wait * 2 ** min(attempts - 1, 20), LONGEST_WAIT)
