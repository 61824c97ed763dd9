"""Per-buyer SIP headers and gateway addresses: what an operator may set, and
what a caller's values render to. Pure logic."""

from __future__ import annotations

import pytest

from app import gateways, sip_headers
from app.domain_errors import Invalid
from app.sip_headers import Values

VALUES = Values(uuid="0b7e0c8e-1111-4222-8333-944455556666", publisher_id=7, campaign_id=3,
                caller_number="+12025550143", caller_state="DC", caller_zip="20001",
                tags={"source": "web", "vip": True, "score": 4.5, "empty": None})


@pytest.mark.parametrize("name", ["Via", "via", "v", "Route", "record-route", "Contact", "m",
                                  "Call-ID", "i", "CSeq", "From", "f", "To", "t", "Max-Forwards",
                                  "Content-Length", "l", "Proxy-Authorization", "AUTHORIZATION",
                                  "X-RTB-Reservation"])
def test_routing_and_authentication_headers_are_refused(name):
    with pytest.raises(Invalid, match="the edge's to set"):
        sip_headers.parse(f"{name}: x")


@pytest.mark.parametrize("spec", ["X Publisher: 1", "X-Pub(lisher): 1", "X-Publisher;ID: 1",
                                  ": 1", "X-Ünicode: 1", "no colon at all"])
def test_a_name_that_is_no_header_token_is_refused(spec):
    with pytest.raises(Invalid, match="not a header name|is not like"):
        sip_headers.parse(spec)


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nVia: x", "nul\x00", "bell\x07"])
def test_a_value_with_cr_lf_or_control_characters_is_refused(value):
    with pytest.raises(Invalid, match="control characters"):
        sip_headers.parse(f"X-Note: {value}")


@pytest.mark.parametrize("value", ["{caller}", "{tag:}", "{}", "{uuid", "uuid}", "{{uuid}}"])
def test_an_unknown_token_or_a_stray_brace_is_refused(value):
    with pytest.raises(Invalid):
        sip_headers.parse(f"X-Note: {value}")


def test_every_token_renders_from_the_callers_values():
    headers = [["X-All", "{caller_number} {caller_state} {caller_zip} {publisher_id} "
                         "{campaign_id} {uuid}"],
               ["X-Tags", "{tag:source}/{tag:vip}/{tag:score}/{tag:empty}/{tag:missing}"]]
    assert sip_headers.render(headers, VALUES) == (
        f"X-All: +12025550143 DC 20001 7 3 {VALUES.uuid}\r\n"
        "X-Tags: web/true/4.5//\r\n")


def test_a_tag_value_that_would_break_the_message_leaves_its_header_out():
    injected = Values(**{**VALUES.__dict__, "tags": {"source": "web\r\nVia: SIP/2.0/UDP evil"}})
    headers = [["X-Source", "{tag:source}"], ["X-Publisher-ID", "{publisher_id}"]]
    assert sip_headers.render(headers, injected) == "X-Publisher-ID: 7\r\n"


def test_headers_change_one_name_at_a_time():
    headers = sip_headers.changed(None, ["X-A: {uuid}", "X-B: b"])
    headers = sip_headers.changed(headers, ["x-a: again", "X-B:", "X-C: c"])
    assert headers == [["x-a", "again"], ["X-C", "c"]]
    assert sip_headers.changed(headers, ["X-A:", "X-C:"]) is None


def test_a_target_has_at_most_sixteen_headers():
    with pytest.raises(Invalid, match="at most 16"):
        sip_headers.changed(None, [f"X-H{i}: v" for i in range(17)])


def test_only_candidates_with_headers_are_rendered():
    class Candidate:
        def __init__(self, id, headers):
            self.id, self.sip_headers = id, headers

    rendered = sip_headers.for_candidates(
        [Candidate(1, [["X-A", "{publisher_id}"]]), Candidate(2, None)], VALUES)
    assert rendered == {"1": "X-A: 7\r\n"}
    assert sip_headers.for_candidates([Candidate(2, None)], VALUES) is None


@pytest.mark.parametrize("address, parsed", [
    ("192.0.2.20", ("192.0.2.20", 5060)), ("192.0.2.20:5080", ("192.0.2.20", 5080)),
    ("sip.carrier.example", ("sip.carrier.example", 5060)),
    ("[2001:db8::1]:5062", ("[2001:db8::1]", 5062))])
def test_a_gateway_address_is_host_and_port(address, parsed):
    assert gateways.parse_address(address) == parsed


@pytest.mark.parametrize("address", ["", "192.0.2.20:0", "192.0.2.20:70000", "host:port",
                                     "sip:192.0.2.20", "2001:db8::1", "[nonsense]:5060",
                                     "bad host"])
def test_a_bad_gateway_address_is_refused(address):
    with pytest.raises(Invalid, match="HOST\\[:PORT\\]"):
        gateways.parse_address(address)
