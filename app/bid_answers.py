"""What a pass-through target's answer means: a bid, no bid, or an error.

Pure logic. By default an answer is read like Ringba's: bidAmount is the
amount, sipAddress (else phoneNumber) the destination, bidId the id and
expireInSeconds the expiry; a target's bid_fields name other paths
('data.bid.amount', 'bids.0.price').
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from app.phone import InvalidNumber, to_e164

OUTCOMES = ("bid", "no_bid", "timeout", "error", "over_max")
FIELDS = ("amount", "destination", "seconds", "id", "expires")
DEFAULT_PATHS = {"amount": ["bidAmount"], "destination": ["sipAddress", "phoneNumber"],
                 "seconds": [], "id": ["bidId"], "expires": ["expireInSeconds"]}
CENT = Decimal("0.01")
# What the columns hold (DECIMAL(10, 2), INT UNSIGNED); an expiry past a day
# outlives any key's TTL, which ends the reservation first.
MOST_MONEY, MOST_SECONDS, MOST_EXPIRY = Decimal("99999999.99"), 86400, 86400


@dataclass(frozen=True)
class Answer:
    """One target's answer to one ping; payout is set on a bid that may take the call."""

    target_id: int
    outcome: str
    ms: float
    reason: str | None = None
    amount: Decimal | None = None
    payout: Decimal | None = None
    seconds: int | None = None
    bid_id: str | None = None
    destination: str | None = None
    expires_in: int | None = None

    def priced(self, margin: Margin) -> Answer:
        """A bid with the publisher's payout under this margin, or why it takes no call."""
        if self.outcome != "bid":
            return self
        payout = margin.payout(self.amount)
        return replace(self, payout=payout, reason=None if payout is not None else "below_margin")

    def as_json(self) -> dict[str, Any]:
        # Field by field: asdict() deep-copies, a measurable share of a ping.
        return {f.name: str(value) if isinstance(value := getattr(self, f.name), Decimal) else value
                for f in fields(self)}


@dataclass(frozen=True)
class Margin:
    """A campaign's cut of live bids: a percent of the bid or an amount, at least minimum."""

    percent: Decimal | None = None
    amount: Decimal | None = None
    minimum: Decimal = Decimal(0)
    allow_loss: bool = False

    def payout(self, bid: Decimal) -> Decimal | None:
        """The publisher's share, or None when the bid does not cover the margin."""
        cut = bid * self.percent / 100 if self.percent is not None else (self.amount or Decimal(0))
        share = (bid - max(cut, self.minimum)).quantize(CENT, ROUND_DOWN)
        if share > 0:
            return share
        return Decimal(0) if self.allow_loss else None


def dig(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document


def _first(document: Any, paths: list[str]) -> Any:
    return next((found for found in (dig(document, p) for p in paths) if found is not None), None)


def paths_of(fields: dict[str, str] | None) -> dict[str, list[str]]:
    return {**DEFAULT_PATHS, **{name: [path] for name, path in (fields or {}).items()}}


def _number(raw: Any) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def read(target_id: int, status: int, body: bytes, ms: float, fields: dict[str, str] | None,
         max_bid: Decimal | None, has_gateway: bool = False) -> Answer:
    """Judge a complete HTTP answer (the caller enforces time and size); a bid is
    priced (Answer.priced) by the campaign's margin of the moment. A phone number
    is a destination only for a target with a carrier gateway."""
    def fail(reason: str, **found) -> Answer:
        return Answer(target_id, "error", ms, reason, **found)

    if status == 204:
        return Answer(target_id, "no_bid", ms)
    if not 200 <= status < 300:
        return fail(f"http_{status}")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return fail("not_json")
    paths = paths_of(fields)
    raw = _first(document, paths["amount"])
    if raw in (None, "", 0, False):
        return Answer(target_id, "no_bid", ms)
    amount = _number(raw)
    if amount is None or amount > MOST_MONEY:
        return fail("bad_amount")
    if amount <= 0:
        return Answer(target_id, "no_bid", ms)
    amount = amount.quantize(CENT)
    if max_bid is not None and amount > max_bid:
        return Answer(target_id, "over_max", ms, amount=amount)
    bid_id = _first(document, paths["id"])
    found = {"amount": amount, "bid_id": None if bid_id is None else str(bid_id)[:255]}
    seconds, expires = (_number(_first(document, paths[n])) for n in ("seconds", "expires"))
    if _first(document, paths["seconds"]) is not None and (
            seconds is None or not 0 <= seconds <= MOST_SECONDS):
        return fail("bad_seconds", **found)
    if expires is not None and expires <= 0:
        return fail("expired", **found)
    found |= {"seconds": None if seconds is None else int(seconds),
              "expires_in": None if expires is None else int(min(expires, MOST_EXPIRY))}
    destination = _first(document, paths["destination"])
    if not isinstance(destination, str) or not destination.strip():
        return fail("no_destination", **found)
    return _destined(target_id, ms, destination.strip(), found, has_gateway)


def _destined(target_id: int, ms: float, destination: str, found: dict,
              has_gateway: bool) -> Answer:
    from app.admin import SIP_URI

    if SIP_URI.match(destination) and len(destination) <= 255:
        return Answer(target_id, "bid", ms, destination=destination, **found)
    try:
        number = to_e164(destination)
    except InvalidNumber:
        return Answer(target_id, "error", ms, "bad_destination", **found)
    # A number (kept in E.164) is called through the target's carrier gateway.
    if has_gateway:
        return Answer(target_id, "bid", ms, destination=number, **found)
    return Answer(target_id, "error", ms, "number_needs_gateway", destination=number, **found)
