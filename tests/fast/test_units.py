"""Pure logic, no servers: phone numbers, settings, bidding rules, SIPp scenarios."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.exc import DBAPIError

from app import targeting
from app.api_metrics import ping_labels
from app.credentials import ha1, key_hash
from app.domain_errors import Invalid
from app.errors import database_unreachable
from app.phone import InvalidNumber, to_e164
from app.pings import check_tags
from app.settings import PingLimits, Settings, SettingsError
from app.stack.kamailio import defines
from app.stack.metrics import reset_metrics_dir
from app.stack.redis import PrivateRedis, ndb_server, redis_parts
from tests.sip import publisher_scenario


@pytest.mark.parametrize("raw", ["2025550123", "(202) 555-0123", "+1 202-555-0123",
                                 "1-202-555-0123", "+12025550123"])
def test_us_numbers_normalise_to_e164(raw):
    assert to_e164(raw) == "+12025550123"


def test_an_international_number_keeps_its_country():
    assert to_e164("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize("raw", ["", "12", "hello", "+1 000 000 0000", "555"])
def test_invalid_numbers_are_refused(raw):
    with pytest.raises(InvalidNumber):
        to_e164(raw)


def test_settings_have_working_defaults():
    s = Settings.from_env({})
    assert (s.http_port, s.sip_port, s.rpc_port, s.db_port) == (8080, 5060, 5080, 3307)
    assert s.sip_domain == s.sip_addr == "127.0.0.1"
    assert s.sip_realm == s.sip_domain
    assert s.var_dir == Path(__file__).resolve().parents[2] / "var"
    assert s.private_database
    assert (s.http_timeout, s.sip_shared_memory_mb, s.rpc_timeout_ms) == (30, 256, 500)
    assert s.retention_days == 90
    assert (s.metrics_host, s.metrics_port) == ("127.0.0.1", 9464)


def test_the_ping_limits_have_defaults_and_come_from_the_environment():
    assert Settings.from_env({}).ping_limits == PingLimits(
        tags=50, tag_name_chars=64, tag_value_chars=256, rate_limit=100, held_numbers=10)
    limits = Settings.from_env({"RTB_MAX_TAGS": "5", "RTB_MAX_TAG_NAME": "6",
                                "RTB_MAX_TAG_VALUE": "7", "RTB_DEFAULT_RATE_LIMIT": "8",
                                "RTB_MAX_HELD_NUMBERS": "9"}).ping_limits
    assert limits == PingLimits(tags=5, tag_name_chars=6, tag_value_chars=7, rate_limit=8,
                                held_numbers=9)


def test_the_sip_domain_is_lowercased_and_is_the_realm_by_default():
    s = Settings.from_env({"RTB_SIP_DOMAIN": "SIP.Example.COM"})
    assert s.sip_domain == s.sip_realm == "sip.example.com"


@pytest.mark.parametrize("name, value", [
    ("RTB_HTTP_PORT", "eighty"), ("RTB_SIP_PORT", "70000"), ("RTB_HTTP_WORKERS", "0"),
    ("RTB_SIP_ADDR", "example.com"), ("RTB_SIP_DOMAIN", "uuid@host"),
    ("RTB_DEFAULT_RATE_LIMIT", "0"), ("RTB_MAX_TAGS", "many"), ("RTB_MAX_HELD_NUMBERS", "-1"),
    ("RTB_SIP_IP_AUTH_TCP_ONLY", "yes"),
    # Kamailio's dialog module refuses to start with a shorter interval.
    ("RTB_SIP_KEEPALIVE_SECONDS", "29"), ("RTB_SIP_KEEPALIVE_FAILURES", "0"),
    ("RTB_SIP_REPLY_SECONDS", "0"), ("RTB_SIP_TOPOLOGY_HIDING", "yes"),
    ("RTB_HTTP_TIMEOUT", "0"), ("RTB_SIP_SHARED_MEMORY_MB", "32"), ("RTB_RPC_TIMEOUT_MS", "soon"),
    # The usage counters count the last 32 days from history.
    ("RTB_RETENTION_DAYS", "32"),
    ("RTB_METRICS_PORT", "0"), ("RTB_METRICS_HOST", "metrics.example.com"),
    # Metrics are never served on the publishers' port.
    ("RTB_METRICS_PORT", "8080"),
    ("RTB_POSTBACK_TIMEOUT", "0"), ("RTB_POSTBACK_RETRY_SECONDS", "soon"),
    ("RTB_POSTBACK_GIVE_UP_SECONDS", "-1"),
])
def test_a_bad_setting_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_ha1_is_what_kamctl_computes():
    # printf alice:sip.example.com:secret | md5sum
    assert ha1("alice", "sip.example.com", "secret") == "a0bbf6034b8565747c15ee9850d9215a"


def test_key_hash_is_sha256_hex():
    assert key_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("auth", [False, True])
@pytest.mark.parametrize("refused_with", [None, 403])
def test_publisher_scenarios_are_well_formed_xml(auth, refused_with):
    root = ET.fromstring(publisher_scenario(auth=auth, refused_with=refused_with))
    sends = [s.text.split()[0] for s in root.iter("send")]
    expected = (["INVITE", "ACK", "INVITE"] if auth else ["INVITE"])
    expected += ["ACK"] if refused_with else ["ACK", "BYE"]
    assert sends == expected


# ------------------------------------------------------------------ bidding


@dataclass
class FakeTarget:
    id: int
    payout: Decimal = Decimal("10")
    priority: int = 1
    weight: int = 1
    concurrency_cap: int | None = None
    hourly_cap: int | None = None
    daily_cap: int | None = None
    monthly_cap: int | None = None
    hours: str | None = None
    timezone: str = "UTC"
    states: str | None = None
    zips: str | None = None
    tag_rules: dict | None = None


WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_weights_share_ties_in_proportion():
    rng = random.Random(7)
    heavy, light = FakeTarget(1, weight=3), FakeTarget(2, weight=1)
    firsts = [targeting.rank([heavy, light], rng)[0].id for _ in range(4000)]
    assert 0.72 < firsts.count(1) / 4000 < 0.78


def test_payout_beats_priority_and_priority_beats_weight():
    rng = random.Random(1)
    ranked = targeting.rank([FakeTarget(1, Decimal("10"), priority=1, weight=100),
                             FakeTarget(2, Decimal("12"), priority=5),
                             FakeTarget(3, Decimal("10"), priority=0)], rng)
    assert [t.id for t in ranked] == [2, 3, 1]


@pytest.mark.parametrize("hours, zone, now, open_", [
    ("mon-fri 09:00-17:00", "UTC", WEDNESDAY_NOON, True),
    ("mon-fri 09:00-17:00", "America/New_York", WEDNESDAY_NOON, False),   # 07:00 there
    ("sat,sun 00:00-24:00", "UTC", WEDNESDAY_NOON, False),
    ("daily 22:00-02:00", "UTC", WEDNESDAY_NOON.replace(hour=1), True),    # past midnight
    ("tue 22:00-02:00", "UTC", WEDNESDAY_NOON.replace(hour=1), True),      # Tuesday's night
    ("wed 22:00-02:00", "UTC", WEDNESDAY_NOON.replace(hour=1), False),
    ("fri-mon 10:00-11:00", "UTC", WEDNESDAY_NOON, False),                 # a range that wraps
    (None, "UTC", WEDNESDAY_NOON, True),
])
def test_business_hours(hours, zone, now, open_):
    assert targeting.is_open(hours, zone, now) is open_


@pytest.mark.parametrize("spec", ["weekdays 9-5", "mon 09:00-09:00", "mon 25:00-26:00", "xyz 09:00-10:00", ""])
def test_bad_hours_are_refused(spec):
    with pytest.raises(ValueError):
        targeting.parse_hours(spec)


def test_open_to_names_the_stage_that_left_no_target():
    caller = targeting.Caller("NY", "10001", {"insured": "no"})
    cases = [
        ([], "no_target"),
        ([FakeTarget(1, hours="sat 00:00-01:00")], "closed"),
        ([FakeTarget(1, states="CA")], "geo"),
        ([FakeTarget(1, zips="902")], "geo"),
        ([FakeTarget(1, tag_rules={"insured": ["yes"]})], "tags"),
    ]
    for targets, reason in cases:
        assert targeting.open_to(targets, caller, WEDNESDAY_NOON, random.Random(0)) == ([], reason)


def test_a_geo_rule_never_matches_a_caller_in_an_unknown_place():
    nowhere = targeting.Caller(None, None, {})
    assert not targeting.geo_matches(FakeTarget(1, states="CA"), nowhere)
    assert not targeting.geo_matches(FakeTarget(1, zips="9"), nowhere)
    assert targeting.geo_matches(FakeTarget(1), nowhere)


@pytest.mark.parametrize("number, tags, state", [
    ("+13105550123", {}, "CA"),
    ("+12025550123", {}, "DC"),
    ("+12125550123", {"caller_zip": "94105"}, "CA"),
    ("+12125550123", {"caller_state": "Texas"}, "TX"),
    ("+442079460958", {}, None),
    (None, {}, None),
])
def test_the_callers_state(number, tags, state):
    assert targeting.caller_of(number, tags).state == state


@pytest.mark.parametrize(("code", "unreachable"), [(1053, True), (1927, True), (2003, True),
                                                   (1205, False), (1062, False)])
def test_a_database_going_away_is_told_apart_from_a_refused_statement(code, unreachable):
    error = DBAPIError("SELECT 1", {}, pymysql.err.OperationalError(code, "message"))
    assert database_unreachable(error) is unreachable


@pytest.mark.parametrize("url, server", [
    ("redis://:s3cret@127.0.0.1:6380/0", "name=topos;addr=127.0.0.1;port=6380;db=0;pass=s3cret"),
    ("redis://redis.internal", "name=topos;addr=redis.internal;port=6379;db=0"),
    ("redis://:pw@10.0.0.5:7000/3", "name=topos;addr=10.0.0.5;port=7000;db=3;pass=pw"),
])
def test_a_redis_url_becomes_ndb_redis_server_attributes(url, server):
    assert ndb_server(url) == server


@pytest.mark.parametrize("env, private", [({}, True), ({"RTB_SIP_TOPOLOGY_HIDING": "0"}, False),
                                          ({"RTB_REDIS_URL": "redis://10.0.0.5"}, False)])
def test_a_private_redis_runs_only_for_topology_hiding_without_an_operators(env, private):
    parts = redis_parts(Settings.from_env(env))
    assert [type(p) for p in parts] == ([PrivateRedis] if private else [])


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://h/x",
                                 "redis://:a;b@127.0.0.1", 'redis://:a"b@127.0.0.1'])
def test_a_redis_url_ndb_redis_cannot_take_is_refused(url):
    with pytest.raises(SettingsError):
        ndb_server(url)


def test_tags_at_their_limits_pass_and_one_more_of_anything_is_invalid_tag():
    limits = PingLimits(tags=2, tag_name_chars=3, tag_value_chars=4)
    check_tags({"abc": "wxyz", "n": 1234}, limits)
    check_tags({"t": True, "u": None}, limits)
    for tags in ({"a": 1, "b": 2, "c": 3}, {"abcd": 1}, {"a": "vwxyz"}, {"a": 12345},
                 {"a": {}}, {"a": []}):
        with pytest.raises(Invalid) as refused:
            check_tags(tags, limits)
        assert refused.value.code == "invalid_tag"


@pytest.mark.parametrize("value, switched", [(None, True), ("1", True), ("0", False)])
def test_topology_hiding_is_on_unless_switched_off(value, switched):
    settings = Settings.from_env({} if value is None else {"RTB_SIP_TOPOLOGY_HIDING": value})
    assert ("WITH_TOPOS" in defines(settings)) is switched


@pytest.mark.parametrize("body, labels", [
    ({"rtb": {"uuid": "u", "status": "reserved"}}, ("reserved", "")),
    ({"rtb": {"uuid": "u", "status": "confirmed"}}, ("confirmed", "")),
    ({"rtb": {"uuid": "u", "status": "reserved", "retreaver_ping_shield": True}},
     ("duplicate", "")),
    ({"rtb": {"status": "rejected", "reason": "capped"}}, ("rejected", "capped")),
    ({"error": {"code": "rate_limited", "message": "…"}}, ("error", "rate_limited")),
])
def test_a_ping_is_counted_by_the_outcome_and_reason_its_answer_shows(body, labels):
    assert ping_labels(body) == labels


def test_the_workers_metrics_folder_is_emptied_at_each_start(tmp_path):
    settings = Settings.from_env({"RTB_VAR_DIR": str(tmp_path)})
    settings.metrics_dir.mkdir()
    (settings.metrics_dir / "counter_4242.db").write_bytes(b"an earlier run's")
    reset_metrics_dir(settings)
    assert list(settings.metrics_dir.iterdir()) == []
    assert settings.metrics_dir.stat().st_mode & 0o777 == 0o700
