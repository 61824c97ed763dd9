"""What a postback says: its URL from a key's template, its signed body, its
retry waits, and which templates a key may hold."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from app.postbacks import message

END = message.CallEnd(postback_id=7, uuid="42ae798e-3309-419a-a98c-ffaf73bb019a", answered=True,
                      payout=Decimal("12.50"), talk_seconds=Decimal("73.412"), converted=True,
                      caller_number="+12025550123",
                      tags={"sub id": "a&b=c/d", "insured": True, "age": 42, "none": None})


def test_every_token_is_filled_and_url_encoded():
    url = message.url("https://p.example/cv?u={uuid}&s={status}&p={payout}&t={talk_seconds}"
                      "&c={converted}&n={caller_number}&sub={tag:sub id}&i={tag:insured}"
                      "&a={tag:age}&z={tag:none}&m={tag:missing}", END)
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert {name: values[0] for name, values in query.items()} == {
        "u": END.uuid, "s": "completed", "p": "12.50", "t": "73.412", "c": "true",
        "n": "+12025550123", "sub": "a&b=c/d", "i": "true", "a": "42", "z": "", "m": ""}


def test_a_value_cannot_change_the_host_or_path_it_lands_in():
    end = message.CallEnd(**{**END.__dict__, "tags": {"evil": "x@evil.example/../admin?y=1#"}})
    url = message.url("https://p.example/{tag:evil}/done", end)
    parts = urlsplit(url)
    assert (parts.hostname, parts.path.count("/"), parts.query, parts.fragment) == (
        "p.example", 2, "", "")


def test_a_call_that_failed_posts_status_failed_and_no_talk_time():
    end = message.CallEnd(**{**END.__dict__, "answered": False, "talk_seconds": None,
                             "converted": False, "payout": Decimal("0")})
    assert message.url("http://h/?s={status}&t={talk_seconds}&p={payout}", end) == \
        "http://h/?s=failed&t=&p=0.00"
    assert json.loads(message.body(end))["talk_seconds"] is None


def test_the_body_holds_the_fields_and_the_signature_is_its_hmac():
    body = message.body(END)
    assert json.loads(body) == {
        "id": 7, "uuid": END.uuid, "status": "completed", "payout": 12.5,
        "talk_seconds": 73.412, "converted": True, "caller_number": "+12025550123",
        "tags": END.tags}
    secret = message.new_secret()
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert message.signature(secret, body) == f"sha256={expected}"
    assert message.signature(message.new_secret(), body) != message.signature(secret, body)


def test_retries_wait_longer_each_time_up_to_an_hour():
    assert [message.retry_wait(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert message.retry_wait(8, 30) == 3600
    assert message.retry_wait(500, 30) == 3600


@pytest.mark.parametrize("template", [
    "https://p.example/cv?id={uuid}&paid={payout}",
    "http://127.0.0.1:8000/{tag:campaign}?c={converted}",
])
def test_an_http_template_with_known_tokens_is_taken(template):
    assert message.check_template(template) == template


@pytest.mark.parametrize("template, why", [
    ("ftp://p.example/{uuid}", "http"),
    ("file:///etc/passwd", "http"),
    ("https:///no-host", "http"),
    ("javascript:alert(1)", "http"),
    ("https://p.example/{uuids}", "unknown token"),
    ("https://p.example/{tag:}", "unknown token"),
    ("https://p.example/a b", "spaces"),
    ("https://p.example/\r\nX: 1", "spaces"),
    ("https://p.example:99999/", "not a URL"),
    ("https://p.example/" + "a" * 2048, "at most"),
])
def test_a_template_that_is_no_http_url_or_names_an_unknown_token_is_refused(template, why):
    with pytest.raises(ValueError, match=why):
        message.check_template(template)
