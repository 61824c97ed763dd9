"""Rules that Python, schema.sql and kamailio.cfg each hold a copy of (they
cannot share code): each test feeds the copies the same cases, so they cannot
drift apart silently."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import uuid as uuidlib

import pytest
from sqlalchemy import select, text

from app import auction, reservations
from app.models import Reservation
from app.phone import to_e164
from app.settings import PROJECT_DIR

SCHEMA = (PROJECT_DIR / "schema.sql").read_text()
CFG = (PROJECT_DIR / "kamailio" / "kamailio.cfg").read_text()


# ----------------------------------------------------------------- E.164

# As publishers type them (phone.py) and as carriers send them in a
# Request-URI or From user (rtb_e164() in schema.sql, for rtb_pstn_match).
NUMBERS = [
    "2025550123", "12025550123", "+12025550123", "(202) 555-0123", "202-555-0123",
    "202.555.0123", "+1 202 555 0123", "1-202-555-0123", "1 (800) 555-1234",
    "+44 20 7946 0958", "+33 1 42 68 53 00", "+61 2 9374 4000", "+49 30 901820",
    "+86 138 0013 8000", "tel:+18005550100",
]


def test_python_and_sql_write_every_number_the_same_in_e164(sessions):
    with sessions() as db:
        in_sql = [db.scalar(text("SELECT rtb_e164(:raw)"), {"raw": raw}) for raw in NUMBERS]
    assert list(zip(NUMBERS, in_sql)) == [(raw, to_e164(raw)) for raw in NUMBERS]


# ------------------------------------------------------ reservation status

STATUS_LIST = re.compile(r"\b(?:\w+\.)?(?:v_)?status\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
STATUS_SET = re.compile(
    r"\b(?:\w+\.)?(?:v_)?status\s*(?:=|<>|!=)\s*(?:IF\([^,]+,\s*)?'([^']*)'(?:,\s*'([^']*)')?",
    re.IGNORECASE)
# Sets only SQL uses: listed here, so a new one is a choice someone made.
SQL_ONLY_SETS = {
    ("claimed", "completed"): "a call came of it: charged to its target for good",
    ("reserved", "confirmed", "claimed"): "a call could be for it, or is: it keeps its pool number",
}


def quoted(values: str) -> tuple[str, ...]:
    return tuple(re.findall(r"'([^']*)'", values))


def test_the_status_check_constraint_holds_every_python_status():
    check = re.search(r"CONSTRAINT reservations_status_ck\s+CHECK\s*\((.*?)\),?\n", SCHEMA, re.S)
    assert quoted(check[1]) == reservations.STATUSES


def test_every_status_set_in_schema_sql_is_one_python_names():
    known = {reservations.STATUSES: "STATUSES", reservations.DIALABLE: "DIALABLE",
             **SQL_ONLY_SETS}
    sets = [quoted(m[1]) for m in STATUS_LIST.finditer(SCHEMA)]
    assert reservations.DIALABLE in sets
    assert [s for s in sets if s not in known] == []


def test_every_status_schema_sql_compares_or_sets_is_a_python_status():
    used = {v for m in STATUS_SET.finditer(SCHEMA) for v in m.groups() if v}
    used |= {v for m in STATUS_LIST.finditer(SCHEMA) for v in quoted(m[1])}
    assert {"reserved", "confirmed", "expired", "no-target", "completed"} <= used
    assert used - set(reservations.STATUSES) == set()


def test_the_status_patterns_see_each_form_schema_sql_writes():
    sql = ("WHERE r.status IN ('reserved', 'gone') AND v_status = 'lost' "
           "SET r.status = IF(p_claim, 'taken', 'held'), final_status = 408")
    assert [quoted(m[1]) for m in STATUS_LIST.finditer(sql)] == [("reserved", "gone")]
    assert {v for m in STATUS_SET.finditer(sql) for v in m.groups() if v} == {
        "lost", "taken", "held"}


# ------------------------------------------------------- the htable value

def rsv_columns() -> list[str]:
    """The columns kamailio.cfg loads into the rsv htable: the key, then the value's fields."""
    return re.search(r"rsv=>[^\"]*cols='([^']*)'", CFG)[1].split(",")


def rsv_field(name: str) -> int:
    """Which field of the rsv value RTB_LOOKUP reads into $var(name)."""
    return int(re.search(rf"\$var\({name}\) = \$\(var\(route\)\{{s\.select,(\d+),,\}}", CFG)[1])


def test_kamailio_reads_the_owner_and_expiry_from_the_fields_the_view_packs(sessions):
    with sessions() as db:
        view = list(db.scalars(text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = 'live_reservation_routes' ORDER BY ordinal_position")))
    assert [c.lower() for c in view] == rsv_columns() == ["uuid", "publisher_id", "expires_epoch"]
    value = rsv_columns()[1:]
    assert (rsv_field("owner"), rsv_field("expires")) == (
        value.index("publisher_id"), value.index("expires_epoch"))


def test_the_value_the_app_pushes_is_the_value_kamailio_loads_from_the_view(client, market,
                                                                           sessions, rpc):
    m = market(ttl=600)
    uuid = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]["uuid"]
    with sessions() as db:
        pushed = reservations.htable_value(
            db.scalar(select(Reservation).where(Reservation.uuid == uuid)))
    assert rpc.call("htable.get", "rsv", uuid)["item"]["value"] == pushed
    rpc.call("htable.reload", "rsv")
    assert rpc.call("htable.get", "rsv", uuid)["item"]["value"] == pushed


# ------------------------------------------------------- the uuid pattern

# Kamailio's `=~` is POSIX regcomp() with these flags (core/rvalue.c, fix_expr).
REG_EXTENDED, REG_ICASE, REG_NOSUB = 1, 2, 8
_libc = ctypes.CDLL(ctypes.util.find_library("c"))


def kamailio_matches(pattern: str, value: str) -> bool:
    regex = ctypes.create_string_buffer(256)  # larger than any libc's regex_t
    assert _libc.regcomp(regex, pattern.encode(), REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0
    try:
        return _libc.regexec(regex, value.encode(), 0, None, 0) == 0
    finally:
        _libc.regfree(regex)


def cfg_uuid_pattern() -> str:
    return re.search(r'\$var\(uuid\) =~ "([^"]+)"', CFG)[1]


GOOD = str(uuidlib.uuid4())
UUIDS = [GOOD, GOOD.upper(), GOOD.replace("-", ""), GOOD[:-1], GOOD + "0", GOOD + "\n",
         "\n" + GOOD, f"{GOOD[:8]}_{GOOD[9:]}", GOOD.replace(GOOD[0], "g", 1), "", "x" * 36,
         f"{GOOD}@sip.rtb.test", "+12025550123"]


@pytest.mark.parametrize("uuid", UUIDS)
def test_python_and_kamailio_accept_the_same_uuids(uuid):
    # RTB_LOOKUP lowercases the Request-URI user before it matches.
    in_cfg = kamailio_matches(cfg_uuid_pattern(), uuid.lower())
    assert in_cfg == bool(reservations.UUID_PATTERN.fullmatch(uuid.lower()))
    assert in_cfg == (uuid.lower() == GOOD)


def test_the_posix_matcher_tells_a_match_from_a_miss():
    assert kamailio_matches("^a+$", "AAA") and not kamailio_matches("^a+$", "aab")


def _procedure(name: str) -> str:
    start = SCHEMA.index(f"CREATE OR REPLACE PROCEDURE {name}(")
    return SCHEMA[start:SCHEMA.index("END //", start)]


def test_the_ping_the_claim_and_the_auction_test_a_target_s_room_alike():
    """Room under the caps is tested under lock by rtb_ping_once and
    rtb_confirm_once, and before asking buyers by app/auction.py: one rule."""
    room = re.compile(r"\(t\.concurrency_cap IS NULL OR u\.live < t\.concurrency_cap\)\s+"
                      r"AND \(t\.hourly_cap IS NULL OR u\.this_hour < t\.hourly_cap\)\s+"
                      r"AND \(t\.daily_cap IS NULL OR u\.today < t\.daily_cap\)\s+"
                      r"AND \(t\.monthly_cap IS NULL OR u\.this_month < t\.monthly_cap\)")
    for where in (_procedure("rtb_ping_once"), _procedure("rtb_confirm_once"),
                  str(auction._ROOM)):
        assert len(room.findall(where)) == 1, where[:200]
        assert "JOIN target_usage u ON u.target_id = t.id" in where


def test_the_ping_and_the_claim_skip_the_usage_read_only_for_a_target_without_any_cap():
    """rtb_ping_once and rtb_confirm_once read target_usage only for a target
    with a cap: the caps they test for are the room rule's, auction.CAPS."""
    capped = re.compile(r"\s+OR\s+".join(rf"{cap} IS NOT NULL" for cap in auction.CAPS))
    # rtb_ping_once also asks it of all its candidates at once, to skip the
    # one-by-one reads when none has a cap.
    for name, reads in (("rtb_ping_once", 2), ("rtb_confirm_once", 1)):
        assert len(capped.findall(_procedure(name))) == reads, name
