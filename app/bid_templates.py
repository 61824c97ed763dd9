"""What a pass-through target is sent: its URL, body and headers, filled from the ping.

Pure logic. Templates take {caller_number}, {caller_state}, {caller_zip},
{publisher_id}, {campaign_id}, {uuid} and {tag:NAME}; a value is URL-encoded
in a URL and JSON-escaped in a body. Other braces (a JSON body's own) stay.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

TOKENS = ("caller_number", "caller_state", "caller_zip", "publisher_id", "campaign_id", "uuid")
_TOKEN = re.compile(r"\{(tag:[^{}]+|[a-z_]+)\}")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class PingFacts:
    """What a buyer may learn of a ping."""

    uuid: str
    caller_number: str | None
    caller_state: str | None
    caller_zip: str | None
    publisher_id: int
    campaign_id: int
    tags: dict[str, Any]

    def value(self, token: str) -> str:
        if token.startswith("tag:"):
            found = self.tags.get(token[4:])
        else:
            found = getattr(self, token)
        return "" if found is None else str(found)

    def default_body(self) -> str:
        """Every tag, and the ping's own fields over them."""
        return json.dumps({**self.tags, **{name: getattr(self, name) for name in TOKENS}})


def check_template(template: str) -> None:
    """A ValueError names a token that is neither ours nor a tag."""
    for match in _TOKEN.finditer(template):
        if not match[1].startswith("tag:") and match[1] not in TOKENS:
            raise ValueError(f"{{{match[1]}}} is not one of {', '.join(TOKENS)} or tag:NAME")


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")


def check_header(header: str) -> tuple[str, str]:
    """'Name: value' as (name, value); the name a header token, the value on one line."""
    name, sep, value = header.partition(":")
    if not sep or not HEADER_NAME.match(name.strip()) or any(c in value for c in "\r\n\0"):
        raise ValueError(f"{header!r} is not a header like 'Authorization: Bearer abc'")
    return name.strip(), value.strip()


def _fill(template: str, facts: PingFacts, escape) -> str:
    def replace(match: re.Match) -> str:
        token = match[1]
        if not token.startswith("tag:") and token not in TOKENS:
            return match[0]
        return escape(facts.value(token))
    return _TOKEN.sub(replace, template)


def fill_url(template: str, facts: PingFacts) -> str:
    return _fill(template, facts, lambda value: quote(value, safe=""))


def fill_body(template: str, facts: PingFacts) -> str:
    return _fill(template, facts, lambda value: json.dumps(value)[1:-1])
