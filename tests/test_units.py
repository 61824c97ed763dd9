"""Pure logic, no servers: phone numbers, settings, SIPp scenarios."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app.credentials import ha1, key_hash
from app.phone import InvalidNumber, to_e164
from app.settings import Settings, SettingsError
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
    assert s.var_dir == Path(__file__).resolve().parent.parent / "var"
    assert s.private_database


def test_the_sip_domain_is_lowercased_and_is_the_realm_by_default():
    s = Settings.from_env({"RTB_SIP_DOMAIN": "SIP.Example.COM"})
    assert s.sip_domain == s.sip_realm == "sip.example.com"


@pytest.mark.parametrize("name, value", [
    ("RTB_HTTP_PORT", "eighty"), ("RTB_SIP_PORT", "70000"), ("RTB_HTTP_WORKERS", "0"),
    ("RTB_SIP_ADDR", "example.com"), ("RTB_SIP_DOMAIN", "uuid@host"),
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
