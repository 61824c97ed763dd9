"""Per-buyer SIP headers: a target's templates ('X-Publisher-ID: {publisher_id}'),
checked when an operator sets them and rendered for each caller.

They are rendered here, in Python, when a ping makes a reservation, for each
of its candidate targets, and stored on the reservation; the edge appends the
set of the target a call is claimed on (rtb_call_headers() in schema.sql).
Python holds every value a template names (the caller, the ping's tags, the
uuid it draws) and checks what it renders in the same code that checked the
templates; the edge does no work per header and never parses a template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.domain_errors import Invalid

log = logging.getLogger(__name__)

# RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]{1,64}$")
# What routes, identifies or authenticates a request is the edge's alone, in
# full or compact form (RFC 3261 7.3.3); X-RTB-Reservation the edge sets itself.
RESERVED = frozenset(name.lower() for name in (
    "Via", "v", "Route", "Record-Route", "Contact", "m", "Call-ID", "i", "CSeq", "From", "f",
    "To", "t", "Max-Forwards", "Content-Length", "l", "Proxy-Authorization", "Authorization",
    "X-RTB-Reservation"))
TOKENS = ("caller_number", "caller_state", "caller_zip", "publisher_id", "campaign_id", "uuid")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TAG = re.compile(r"^tag:(.+)$")
# Control characters, CR and LF above all, would end the header or start another.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 16
MAX_VALUE_CHARS = 255


@dataclass(frozen=True)
class Values:
    """What the tokens stand for in one reservation."""

    uuid: str
    publisher_id: int
    campaign_id: int
    caller_number: str | None
    caller_state: str | None
    caller_zip: str | None
    tags: Mapping[str, Any]

    def of(self, token: str) -> str:
        tag = _TAG.match(token)
        value = self.tags.get(tag[1]) if tag else getattr(self, token)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def parse(spec: str) -> tuple[str, str]:
    """'Name: template' to (name, template); an empty template drops the header."""
    name, colon, template = spec.partition(":")
    name, template = name.strip(), template.strip()
    if not colon:
        raise Invalid("invalid_sip_header",
                      f"{spec!r} is not like 'X-Publisher-ID: {{publisher_id}}'")
    check_name(name)
    if template:
        check_template(name, template)
    return name, template


def check_name(name: str) -> None:
    if not _TOKEN.match(name):
        raise Invalid("invalid_sip_header", f"{name!r} is not a header name"
                      " (1-64 letters, digits and - . ! % * _ + ` ' ~)")
    if name.lower() in RESERVED:
        raise Invalid("invalid_sip_header",
                      f"{name} is the edge's to set; pick another header name")


def check_template(name: str, template: str) -> None:
    if _CONTROL.search(template):
        raise Invalid("invalid_sip_header", f"the value of {name} may not hold CR, LF or other"
                      " control characters")
    if len(template) > MAX_VALUE_CHARS:
        raise Invalid("invalid_sip_header", f"the value of {name} has more than {MAX_VALUE_CHARS}"
                      " characters")
    for token in _PLACEHOLDER.findall(template):
        if token not in TOKENS and not _TAG.match(token):
            raise Invalid("invalid_sip_header", f"{{{token}}} in {name} is none of "
                          + ", ".join(f"{{{t}}}" for t in (*TOKENS, "tag:NAME")))
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        raise Invalid("invalid_sip_header", f"the value of {name} has an unmatched brace")


def changed(current: list[list[str]] | None, specs: Iterable[str]) -> list[list[str]] | None:
    """The target's headers after these 'Name: template' specs: a name with a
    template sets it (in place, matching names case-insensitively), one without
    drops it, the others stay."""
    headers = [list(h) for h in current or []]
    for name, template in map(parse, specs):
        at = next((i for i, h in enumerate(headers) if h[0].lower() == name.lower()), None)
        if at is not None and not template:
            del headers[at]
        elif at is not None:
            headers[at] = [name, template]
        elif template:
            headers.append([name, template])
    if len(headers) > MAX_HEADERS:
        raise Invalid("invalid_sip_header", f"a target has at most {MAX_HEADERS} SIP headers")
    return headers or None


def render(headers: list[list[str]] | None, values: Values) -> str:
    """The header lines, 'Name: value\\r\\n' each, for one caller. A value that
    renders with a control character (a tag's, which the publisher chose) is
    left out, not cleaned: what the buyer reads is what was sent, or nothing."""
    lines = []
    for name, template in headers or []:
        value = _PLACEHOLDER.sub(lambda token: values.of(token[1]), template)
        if _CONTROL.search(value) or len(value) > MAX_VALUE_CHARS:
            log.warning("SIP header %s for reservation %s left out: its value has control"
                        " characters or is too long", name, values.uuid)
            continue
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def for_candidates(targets: Iterable[Any], values: Values) -> dict[str, str] | None:
    """Each candidate target's rendered headers, by target id, for the reservation."""
    rendered = {str(t.id): render(t.sip_headers, values) for t in targets if t.sip_headers}
    return {target: lines for target, lines in rendered.items() if lines} or None
