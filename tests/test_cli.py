"""rtbctl as the operator runs it: its console entry point (app.cli:run) in
this process under click's CliRunner, and once as the installed script."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select, text

from app.credentials import ha1
from app.models import Address, Subscriber
from tests.rtbctl import run as rtbctl_run
from tests.rtbctl import script


@pytest.fixture
def rtbctl(env, kamailio):
    """rtbctl in this process on the test stack; ok=True asserts it succeeded."""

    def run(*args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        done = rtbctl_run(env, *args, stdin=stdin)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


def as_json(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout)


def test_the_installed_console_script_adds_a_campaign(env, kamailio, sessions):
    # One process of its own: the rest run in this one, through the same entry point.
    made = script(env, "campaign", "add", "script-campaign", "--json")
    assert made.returncode == 0, made.stderr
    campaign = json.loads(made.stdout)
    with sessions() as db:
        assert db.scalar(text("SELECT name FROM campaigns WHERE id = :id"),
                         {"id": campaign["id"]}) == "script-campaign"


def test_the_documented_forms_print_json(rtbctl, client, sessions, settings):
    publisher = as_json(rtbctl("publisher", "add", "cli-publisher", "--json"))
    assert publisher == {"id": publisher["id"], "name": "cli-publisher"}
    pid = str(publisher["id"])
    allowed = as_json(rtbctl("publisher", "allow-ip", pid, "127.0.9.0/24", "--json"))
    assert (allowed["ip_addr"], allowed["mask"]) == ("127.0.9.0", 24)
    user = as_json(rtbctl("publisher", "sip-user", pid, "cli-user", "--password-stdin", "--json",
                          stdin="pa55word\n"))
    assert user["username"] == "cli-user"
    campaign = as_json(rtbctl("campaign", "add", "cli-campaign", "--json"))
    target = as_json(rtbctl("target", "add", str(campaign["id"]), "--sip-uri",
                            "sip:buyer@127.0.0.1:5999", "--payout", "12.5",
                            "--min-seconds", "60", "--json"))
    assert target["id"] > 0
    key = as_json(rtbctl("key", "add", str(campaign["id"]), pid, "--ttl", "45",
                         "--inbound-number", "8005551234", "--json"))
    assert len(key["key"]) == 48
    assert key["inbound_number"] == "+18005551234"

    rtb = client.post("/rtbs.json", query_string={"key": key["key"]}).get_json()["rtb"]
    shown = as_json(rtbctl("reservation", "show", rtb["uuid"], "--json"))
    assert shown["uuid"] == rtb["uuid"]
    assert shown["status"] == "reserved"
    assert shown["target_id"] == target["id"]
    assert shown["payout"] == 12.5

    with sessions() as db:
        row = db.scalar(select(Subscriber).where(Subscriber.username == "cli-user"))
        address = db.scalar(select(Address).where(Address.id == allowed["id"]))
    assert row.password == "" and "pa55word" not in (row.ha1 + row.ha1b)
    assert row.ha1 == ha1("cli-user", settings.sip_realm, "pa55word")
    assert row.publisher_id == publisher["id"]
    assert (address.grp, address.tag) == (1, f"publisher:{pid}")


def test_without_json_the_output_is_readable(rtbctl):
    out = rtbctl("publisher", "add", "plain-publisher").stdout
    assert "name: plain-publisher" in out


@pytest.mark.parametrize("args, message", [
    (["publisher", "allow-ip", "999999", "127.0.0.1"], "no publisher with id 999999"),
    (["campaign", "add", ""], "a name has 1 to 128 characters"),
    (["target", "add", "999999", "--sip-uri", "sip:x@127.0.0.1", "--payout", "1",
      "--min-seconds", "1"], "no campaign with id 999999"),
    (["reservation", "show", "00000000-0000-4000-8000-000000000000"], "no reservation"),
])
def test_mistakes_print_one_line_and_exit_1(rtbctl, args, message):
    done = rtbctl(*args, ok=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("uri", ["http://buyer.example", "sip:buyer @host", "buyer@host"])
def test_a_target_uri_that_is_not_sip_is_refused(rtbctl, uri):
    campaign = as_json(rtbctl("campaign", "add", f"bad-uri-{len(uri)}-{uri[:3]}", "--json"))
    done = rtbctl("target", "add", str(campaign["id"]), "--sip-uri", uri, "--payout", "1",
                  "--min-seconds", "1", ok=False)
    assert done.returncode == 1 and "is not a SIP URI" in done.stderr


def test_a_sip_user_of_another_publisher_cannot_be_taken_over(rtbctl):
    first = as_json(rtbctl("publisher", "add", "owner-a", "--json"))["id"]
    second = as_json(rtbctl("publisher", "add", "owner-b", "--json"))["id"]
    rtbctl("publisher", "sip-user", str(first), "shared-name", "--password-stdin", stdin="pw\n")
    done = rtbctl("publisher", "sip-user", str(second), "shared-name", "--password-stdin",
                  stdin="pw\n", ok=False)
    assert done.returncode == 1 and "belongs to another publisher" in done.stderr


def test_a_sip_password_is_asked_for_twice_and_never_taken_from_the_arguments(
        rtbctl, sessions, settings):
    publisher = as_json(rtbctl("publisher", "add", "prompted", "--json"))["id"]
    as_argument = rtbctl("publisher", "sip-user", str(publisher), "prompted-user", "in-argv",
                         ok=False)
    assert as_argument.returncode == 2 and "unexpected extra argument" in as_argument.stderr
    prompted = rtbctl("publisher", "sip-user", str(publisher), "prompted-user", "--json",
                      stdin="typed-pw\ntyped-pw\n")
    assert "typed-pw" not in prompted.stdout
    with sessions() as db:
        row = db.scalar(select(Subscriber).where(Subscriber.username == "prompted-user"))
    assert row.ha1 == ha1("prompted-user", settings.sip_realm, "typed-pw")
    mismatch = rtbctl("publisher", "sip-user", str(publisher), "prompted-user",
                      stdin="one\nother\n", ok=False)
    assert mismatch.returncode != 0


def test_a_second_publisher_with_the_same_name_is_refused(rtbctl):
    rtbctl("publisher", "add", "twice")
    done = rtbctl("publisher", "add", "twice", ok=False)
    assert done.returncode == 1 and "exists" in done.stderr


def test_a_target_takes_every_rule_and_edit_changes_only_what_is_given(rtbctl):
    campaign = str(as_json(rtbctl("campaign", "add", "rules-campaign", "--json"))["id"])
    made = as_json(rtbctl(
        "target", "add", campaign, "--sip-uri", "sip:buyer@127.0.0.1:5999", "--payout", "20",
        "--min-seconds", "90", "--priority", "2", "--weight", "3", "--concurrency-cap", "5",
        "--hourly-cap", "10", "--daily-cap", "50", "--monthly-cap", "900",
        "--hours", "mon-fri 09:00-17:00", "--timezone", "America/New_York",
        "--states", "ca,tx", "--zips", "902,100", "--tag", "insured=yes,y", "--json"))
    assert made["states"] == "CA,TX" and made["tags"] == {"insured": ["yes", "y"]}
    assert (made["concurrency_cap"], made["monthly_cap"], made["weight"]) == (5, 900, 3)
    edited = as_json(rtbctl("target", "edit", str(made["id"]), "--payout", "25",
                            "--concurrency-cap", "none", "--hours", "", "--tag", "age=65",
                            "--json"))
    assert edited["payout"] == 25.0 and edited["concurrency_cap"] is None
    assert edited["hours"] is None and edited["timezone"] == "America/New_York"
    assert edited["tags"] == {"insured": ["yes", "y"], "age": ["65"]}
    assert edited["daily_cap"] == 50
    disabled = as_json(rtbctl("target", "disable", str(made["id"]), "--json"))
    assert disabled["enabled"] is False
    listed = as_json(rtbctl("target", "list", campaign, "--json"))
    assert [t["id"] for t in listed] == [made["id"]]


@pytest.mark.parametrize("option, value, message", [
    ("--hours", "weekdays 9-5", "is not like"),
    ("--timezone", "Mars/Olympus", "Mars/Olympus"),
    ("--states", "CA,XX", "unknown US state"),
    ("--zips", "9021a", "ZIP prefixes"),
    ("--weight", "0", "weight may not be below 1"),
])
def test_a_bad_target_rule_is_refused(rtbctl, option, value, message):
    campaign = str(as_json(rtbctl("campaign", "add", f"bad-{option}", "--json"))["id"])
    done = rtbctl("target", "add", campaign, "--sip-uri", "sip:b@127.0.0.1", "--payout", "1",
                  "--min-seconds", "1", option, value, ok=False)
    assert done.returncode in (1, 2) and message in done.stderr


def test_key_settings_are_set_and_edited_by_prefix(rtbctl):
    publisher = str(as_json(rtbctl("publisher", "add", "key-settings-pub", "--json"))["id"])
    campaign = str(as_json(rtbctl("campaign", "add", "key-settings-campaign", "--json"))["id"])
    made = as_json(rtbctl("key", "add", campaign, publisher, "--auto-confirm",
                          "--duplicate-scope", "campaign", "--rate-limit", "10/s",
                          "--require-caller-number", "--json"))
    assert (made["auto_confirm"], made["duplicate_scope"], made["rate_limit"],
            made["require_caller_number"]) == (True, "campaign", 10, True)
    edited = as_json(rtbctl("key", "edit", made["key"][:8], "--no-auto-confirm",
                            "--rate-limit", "none", "--ttl", "30", "--json"))
    assert (edited["auto_confirm"], edited["rate_limit"], edited["ttl"]) == (False, None, 30)
    assert edited["require_caller_number"] is True


def test_pings_and_reservations_report_what_happened(rtbctl, client):
    publisher = str(as_json(rtbctl("publisher", "add", "report-pub", "--json"))["id"])
    campaign = str(as_json(rtbctl("campaign", "add", "report-campaign", "--json"))["id"])
    rtbctl("target", "add", campaign, "--sip-uri", "sip:b@127.0.0.1:9", "--payout", "5",
           "--min-seconds", "30", "--states", "CA")
    key = as_json(rtbctl("key", "add", campaign, publisher, "--json"))["key"]
    made = client.post("/rtbs.json", query_string={"key": key, "caller_state": "CA"})
    client.post("/rtbs.json", query_string={"key": key, "caller_state": "NY"})
    summary = as_json(rtbctl("pings", "--key", key[:8], "--since", "1h", "--json"))
    assert {(r["outcome"], r["reason"], r["pings"]) for r in summary} == {
        ("reserved", None, 1), ("rejected", "geo", 1)}
    listed = as_json(rtbctl("reservations", "--campaign", campaign, "--status", "reserved",
                            "--json"))
    assert [r["uuid"] for r in listed] == [made.get_json()["rtb"]["uuid"]]


def test_an_address_whitelisted_for_one_publisher_is_refused_for_another(rtbctl):
    first = str(as_json(rtbctl("publisher", "add", "ip-owner-a", "--json"))["id"])
    second = str(as_json(rtbctl("publisher", "add", "ip-owner-b", "--json"))["id"])
    made = as_json(rtbctl("publisher", "allow-ip", first, "127.0.8.8", "--json"))
    assert as_json(rtbctl("publisher", "allow-ip", first, "127.0.8.8/32", "--json")) == made
    done = rtbctl("publisher", "allow-ip", second, "127.0.8.8", ok=False)
    assert done.returncode == 1 and f"whitelisted for publisher:{first}" in done.stderr


def test_a_key_prefix_of_digits_only_is_still_a_prefix(rtbctl, sessions):
    publisher = str(as_json(rtbctl("publisher", "add", "digits-pub", "--json"))["id"])
    campaign = str(as_json(rtbctl("campaign", "add", "digits-campaign", "--json"))["id"])
    made = as_json(rtbctl("key", "add", campaign, publisher, "--json"))
    with sessions() as db:
        db.execute(text("UPDATE postback_keys SET key_prefix = '12345678' WHERE id = :i"),
                   {"i": made["id"]})
        db.commit()
    assert as_json(rtbctl("key", "edit", "12345678", "--ttl", "45", "--json"))["id"] == made["id"]
    assert as_json(rtbctl("key", "edit", str(made["id"]), "--ttl", "40", "--json"))["ttl"] == 40


def test_usage_check_prints_a_drifted_target_and_repair_rewrites_it(rtbctl, client, market,
                                                                      sessions):
    m = market(targets=[{"hourly_cap": 10}], auto_confirm=True)
    assert client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]["status"] \
        == "confirmed"
    with sessions() as db:
        db.execute(text("CALL rtb_usage_recount(:t)"), {"t": m.target_id})
        db.execute(text("UPDATE target_usage_counts SET charges = IF(period = 'h', 3, 7)"
                        " WHERE target_id = :t AND period IN ('h', 'd')"), {"t": m.target_id})
        db.commit()
    done = rtbctl("usage", "--check", "--json", ok=False)
    assert done.returncode == 1
    assert json.loads(done.stdout) == [{
        "target_id": m.target_id, "this_hour": 4, "today": 8, "this_month": 1,
        "recounted_this_hour": 1, "recounted_today": 1, "recounted_this_month": 1}]
    assert "target_id=" in rtbctl("usage", ok=False).stdout
    assert as_json(rtbctl("usage", "--repair", "--json"))["repaired_targets"] >= 1
    assert rtbctl("usage", "--check").stdout == ""
