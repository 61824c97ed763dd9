"""rtbctl gateway, and targets with a number or SIP headers, as the operator runs them."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from sqlalchemy import select

from app.models import Gateway
from tests.rtbctl import run as rtbctl_run

PASSWORD = "c4rrier pass"


@pytest.fixture
def rtbctl(env, database):
    def run(*args: str, stdin: str | None = None):
        return rtbctl_run(env, *args, stdin=stdin)
    return run


def ok(done) -> dict | list:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def campaign(rtbctl) -> str:
    made = ok(rtbctl("campaign", "add", f"gw-campaign-{uuidlib.uuid4().hex[:8]}", "--json"))
    return str(made["id"])


@pytest.fixture
def gateway(rtbctl) -> str:
    name = f"carrier-{uuidlib.uuid4().hex[:8]}"
    ok(rtbctl("gateway", "add", name, "192.0.2.20:5080", "--transport", "tcp", "--prefix", "011",
              "--username", "trunk", "--password-stdin", "--json", stdin=PASSWORD + "\n"))
    return name


def test_a_gateway_is_added_listed_and_its_password_never_printed(rtbctl, gateway, sessions):
    listed = [g for g in ok(rtbctl("gateway", "list", "--json")) if g["name"] == gateway]
    assert listed == [{"id": listed[0]["id"], "name": gateway, "host": "192.0.2.20", "port": 5080,
                       "transport": "tcp", "prefix": "011", "username": "trunk",
                       "has_password": True}]
    plain = rtbctl("gateway", "list")
    assert gateway in plain.stdout and PASSWORD not in plain.stdout + plain.stderr
    with sessions() as db:
        assert db.scalar(select(Gateway.password).where(Gateway.name == gateway)) == PASSWORD


def test_a_gateway_is_edited_and_rekeyed(rtbctl, gateway, sessions):
    edited = ok(rtbctl("gateway", "edit", gateway, "--address", "gw.carrier.example",
                       "--prefix", "+", "--password-stdin", "--json", stdin="n3w\n"))
    assert (edited["host"], edited["port"], edited["prefix"]) == ("gw.carrier.example", 5060, "+")
    with sessions() as db:
        assert db.scalar(select(Gateway.password).where(Gateway.name == gateway)) == "n3w"
    dropped = ok(rtbctl("gateway", "edit", gateway, "--username", "", "--json"))
    assert (dropped["username"], dropped["has_password"]) == (None, False)


def test_a_number_target_calls_through_a_named_gateway(rtbctl, gateway, campaign):
    target = ok(rtbctl("target", "add", campaign, "--number", "(202) 555-0143", "--gateway",
                       gateway, "--payout", "20", "--min-seconds", "90", "--json"))
    assert (target["number"], target["sip_uri"]) == ("+12025550143", None)
    moved = ok(rtbctl("target", "edit", str(target["id"]), "--sip-uri", "sip:b@192.0.2.30",
                      "--json"))
    assert (moved["number"], moved["sip_uri"]) == (None, "sip:b@192.0.2.30")


@pytest.mark.parametrize("args, message", [
    (["--number", "2025550143"], "needs --gateway"),
    (["--number", "2025550143", "--gateway", "no-such-gateway"], "no gateway named"),
    (["--number", "555", "--gateway", "{gateway}"], "not a valid phone number"),
    (["--number", "2025550143", "--sip-uri", "sip:b@192.0.2.30", "--gateway", "{gateway}"],
     "one of a SIP URI, a number or a bid URL"),
    ([], "needs --sip-uri, --number with --gateway, or --bid-url"),
])
def test_a_target_without_one_clear_destination_is_refused(rtbctl, gateway, campaign, args,
                                                           message):
    done = rtbctl("target", "add", campaign, *[a.format(gateway=gateway) for a in args],
                  "--payout", "20", "--min-seconds", "90")
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_a_gateway_in_use_is_not_removed(rtbctl, gateway, campaign):
    target = ok(rtbctl("target", "add", campaign, "--number", "2025550143", "--gateway", gateway,
                       "--payout", "20", "--min-seconds", "90", "--json"))
    refused = rtbctl("gateway", "remove", gateway)
    assert refused.returncode == 1 and f"targets {target['id']} call through" in refused.stderr
    ok(rtbctl("target", "edit", str(target["id"]), "--sip-uri", "sip:b@192.0.2.30", "--json"))
    assert rtbctl("gateway", "remove", gateway).returncode == 1, "the target still names it"
    ok(rtbctl("target", "edit", str(target["id"]), "--gateway", "", "--json"))
    assert ok(rtbctl("gateway", "remove", gateway, "--json"))["removed"] is True


def test_an_unused_gateway_is_removed(rtbctl, gateway):
    assert ok(rtbctl("gateway", "remove", gateway, "--json"))["removed"] is True
    assert gateway not in [g["name"] for g in ok(rtbctl("gateway", "list", "--json"))]
    assert rtbctl("gateway", "remove", gateway).returncode == 1


def test_sip_headers_are_set_and_dropped_by_name(rtbctl, campaign):
    target = ok(rtbctl("target", "add", campaign, "--sip-uri", "sip:b@192.0.2.30", "--payout", "5",
                       "--min-seconds", "30", "--sip-header", "X-Publisher-ID: {publisher_id}",
                       "--sip-header", "X-Lead: {uuid}", "--json"))
    assert target["sip_headers"] == ["X-Publisher-ID: {publisher_id}", "X-Lead: {uuid}"]
    edited = ok(rtbctl("target", "edit", str(target["id"]), "--sip-header", "X-Lead:",
                       "--sip-header", "X-Source: {tag:source}", "--json"))
    assert edited["sip_headers"] == ["X-Publisher-ID: {publisher_id}", "X-Source: {tag:source}"]


@pytest.mark.parametrize("header, message", [
    ("Via: SIP/2.0/UDP 192.0.2.1", "Via is the edge's to set"),
    ("proxy-authorization: x", "proxy-authorization is the edge's to set"),
    ("X Bad Name: 1", "'X Bad Name' is not a header name"),
    ("X-Note: a\r\nVia: x", "may not hold CR, LF"),
    ("X-Note: {caller}", "{caller} in X-Note is none of"),
])
def test_a_bad_sip_header_is_refused_with_a_clear_error(rtbctl, campaign, header, message):
    done = rtbctl("target", "add", campaign, "--sip-uri", "sip:b@192.0.2.30", "--payout", "5",
                  "--min-seconds", "30", "--sip-header", header)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith("error: ")
