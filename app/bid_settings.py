"""A pass-through target's settings as rtbctl gives them: checked before they are kept."""

from __future__ import annotations

from typing import Any

from app import bid_templates
from app.bid_answers import FIELDS
from app.domain_errors import Invalid

BID_SETTINGS = ("bid_url", "bid_method", "bid_timeout_ms", "bid_body", "bid_headers", "max_bid",
                "bid_fields")


def check(rules: dict[str, Any]) -> dict[str, Any]:
    """Validate (and take out of rules) a pass-through target's settings."""
    found = {name: rules.pop(name) for name in BID_SETTINGS if name in rules}
    try:
        if found.get("bid_url") is not None:
            if len(found["bid_url"]) > 2048:
                raise ValueError("a bid URL has at most 2048 characters")
            bid_templates.check_template(found["bid_url"])
            bid_templates.check_url(found["bid_url"])
        if found.get("bid_body"):
            bid_templates.check_template(found["bid_body"])
        if "bid_headers" in found:
            found["bid_headers"] = [": ".join(bid_templates.check_header(h))
                                    for h in found["bid_headers"] or [] if h] or None
    except ValueError as error:
        raise Invalid("invalid_target", str(error)) from None
    if "bid_body" in found:
        found["bid_body"] = found["bid_body"] or None
    if found.get("bid_method", "POST").upper() not in ("GET", "POST"):
        raise Invalid("invalid_target", "the bid method is GET or POST")
    if "bid_method" in found:
        found["bid_method"] = found["bid_method"].upper()
    if not 1 <= found.get("bid_timeout_ms", 1) <= 60000:
        raise Invalid("invalid_target", "the bid timeout is 1 to 60000 milliseconds")
    if found.get("max_bid") is not None and found["max_bid"] <= 0:
        raise Invalid("invalid_target", "the maximum bid is above zero")
    return found


def changed_fields(current: dict[str, str] | None, changes: dict[str, str]) -> dict[str, str] | None:
    """The paths an answer is read at, changed one name at a time; an empty path drops it."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise Invalid("invalid_target", f"bid fields are {', '.join(FIELDS)}, not {', '.join(unknown)}")
    fields = {**(current or {}), **changes}
    return {name: path for name, path in fields.items() if path} or None
