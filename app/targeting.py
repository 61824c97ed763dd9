"""Which of a campaign's targets may take a caller, and in what order.

Pure logic: no database, no clock of its own. The database has the final say
on caps when a reservation is confirmed (rtb_confirm in schema.sql).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import phonenumbers
import us
import zipcodes

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WINDOW = re.compile(r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


class TargetLike(Protocol):
    id: int
    payout: Any
    priority: int
    weight: int
    concurrency_cap: int | None
    hourly_cap: int | None
    daily_cap: int | None
    monthly_cap: int | None
    hours: str | None
    timezone: str
    states: str | None
    zips: str | None
    tag_rules: dict[str, list[str]] | None


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    start: int
    end: int


@dataclass(frozen=True)
class Caller:
    state: str | None
    zip: str | None
    tags: dict[str, Any]


def _minutes(hhmm: str) -> int:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"{hhmm} is not a time of day")
    return hours * 60 + minutes


def _days(spec: str) -> frozenset[int]:
    if spec == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{part!r} is not a day or a range of days (mon … sun)")
        start, end = DAYS.index(first), DAYS.index(last or first)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def parse_hours(spec: str) -> list[Window]:
    """'mon-fri 09:00-17:00; sat 10:00-14:00'. An end before the start runs past midnight."""
    windows = []
    for segment in filter(None, (s.strip().lower() for s in spec.split(";"))):
        match = _WINDOW.match(segment)
        if not match:
            raise ValueError(f"{segment!r} is not like 'mon-fri 09:00-17:00'")
        start, end = _minutes(match["start"]), _minutes(match["end"])
        if start == end:
            raise ValueError(f"{segment!r} opens and closes at the same time")
        windows.append(Window(_days(match["days"]), start, end))
    if not windows:
        raise ValueError("no opening hours given")
    return windows


def is_open(hours: str | None, zone: str, now: datetime) -> bool:
    if not hours:
        return True
    local = now.astimezone(ZoneInfo(zone))
    day, minute = local.weekday(), local.hour * 60 + local.minute
    for w in parse_hours(hours):
        if w.start < w.end and day in w.days and w.start <= minute < w.end:
            return True
        if w.start > w.end and ((day in w.days and minute >= w.start)
                                or ((day - 1) % 7 in w.days and minute < w.end)):
            return True
    return False


def state_code(name: str | None) -> str | None:
    """'CA', 'ca', 'California', 'New York, NY' and 'Washington D.C.' to a USPS code."""
    if not name:
        return None
    name = name.split(",")[-1].strip()
    if name.replace(".", "").upper() in ("DC", "WASHINGTON DC"):
        return "DC"
    found = us.states.lookup(name)
    return found.abbr if found else None


def caller_of(caller_number: str | None, tags: dict[str, Any]) -> Caller:
    """Where the caller is: caller_state or caller_zip tags first, else the area code."""
    zip_code = str(tags.get("caller_zip") or "").strip()[:5] or None
    state = state_code(str(tags.get("caller_state") or ""))
    if state is None and zip_code:
        found = zipcodes.matching(zip_code) if zip_code.isdigit() and len(zip_code) == 5 else []
        state = found[0]["state"] if found else None
    if state is None and caller_number:
        # Imported on first use: its area code tables take most of a second to
        # load, which rtbctl (it validates states with this module) never needs.
        from phonenumbers import geocoder

        number = phonenumbers.parse(caller_number)
        if phonenumbers.region_code_for_number(number) == "US":
            state = state_code(geocoder.description_for_number(number, "en"))
    return Caller(state, zip_code, tags)


def split_list(value: str | None) -> list[str]:
    return [item.strip().upper() for item in (value or "").split(",") if item.strip()]


def geo_matches(target: TargetLike, caller: Caller) -> bool:
    states, zips = split_list(target.states), split_list(target.zips)
    if states and caller.state not in states:
        return False
    return not zips or (caller.zip is not None and any(caller.zip.startswith(z) for z in zips))


def tags_match(rules: dict[str, list[str]] | None, tags: dict[str, Any]) -> bool:
    for name, allowed in (rules or {}).items():
        value = tags.get(name)
        if value is None or str(value).casefold() not in {str(a).casefold() for a in allowed}:
            return False
    return True


def rank(targets: list[TargetLike], rng: random.Random,
         payouts: dict[int, Any] | None = None) -> list[TargetLike]:
    """Highest payout first (a live bid's in `payouts`, by target id); ties by
    priority (1 before 2), then at random by weight."""
    draw = {t.id: rng.random() ** (1 / max(t.weight, 1)) for t in targets}
    payouts = payouts or {}
    return sorted(targets, key=lambda t: (-payouts.get(t.id, t.payout), t.priority, -draw[t.id]))


def open_to(targets: list[TargetLike], caller: Caller, now: datetime,
            rng: random.Random) -> tuple[list[TargetLike], str | None]:
    """The targets open to this caller now, best first, or none and the stage that
    emptied the list; rtb_ping checks their caps in this order, under the database's locks."""
    if not targets:
        return [], "no_target"
    for reason, keep in _stages(caller, now):
        targets = [t for t in targets if keep(t)]
        if not targets:
            return [], reason
    return rank(targets, rng), None


def _stages(caller: Caller, now: datetime) -> list[tuple[str, Callable[[TargetLike], bool]]]:
    return [
        ("closed", lambda t: is_open(t.hours, t.timezone, now)),
        ("geo", lambda t: geo_matches(t, caller)),
        ("tags", lambda t: tags_match(t.tag_rules, caller.tags)),
    ]

