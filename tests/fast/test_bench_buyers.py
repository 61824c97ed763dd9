"""The pass-through step's buyers (tests/bench/buyers.py), on loopback."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.bench.buyers import BenchBuyers


@pytest.fixture
def buyers():
    started = BenchBuyers()
    yield started
    started.stop()


def test_a_buyer_answers_its_body_to_each_request_of_a_kept_alive_connection(buyers):
    buyers.add("bid0", body={"bidAmount": 10, "sipAddress": "sip:b@127.0.0.1:9"})
    buyers.add("bid1", body={"bidAmount": 11})
    connection = http.client.HTTPConnection("127.0.0.1", buyers.port, timeout=5)
    answers = []
    for path, body in (("/bid0", json.dumps({"uuid": "u" * 300})), ("/bid1", None), ("/bid0", "")):
        connection.request("POST" if body is not None else "GET", path, body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Content-Type"),
                        json.loads(response.read())))
    connection.close()
    assert answers == [
        (200, "application/json", {"bidAmount": 10, "sipAddress": "sip:b@127.0.0.1:9"}),
        (200, "application/json", {"bidAmount": 11}),
        (200, "application/json", {"bidAmount": 10, "sipAddress": "sip:b@127.0.0.1:9"}),
    ]


def test_a_request_sent_in_pieces_is_answered_once_whole(buyers):
    buyers.add("bid0", body={"bidAmount": 10})
    with socket.create_connection(("127.0.0.1", buyers.port), timeout=5) as sock:
        sock.sendall(b"POST /bid0 HTTP/1.1\r\nHost: x\r\nContent-Le")
        sock.sendall(b"ngth: 4\r\n\r\n{}")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        sock.settimeout(5)
        sock.sendall(b"  ")
        assert sock.recv(1024).endswith(b'\r\n\r\n{"bidAmount": 10}')


def test_a_buyer_with_a_delay_answers_after_it(buyers):
    buyers.add("slow", delay=0.5, body={"bidAmount": 3})
    with socket.create_connection(("127.0.0.1", buyers.port), timeout=0.1) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        sock.settimeout(5)
        assert sock.recv(1024).endswith(b'{"bidAmount": 3}')


def test_a_silent_buyer_never_answers_and_stop_hangs_up_on_it():
    buyers = BenchBuyers()
    url = buyers.add("silent", never=True)
    assert url == f"http://127.0.0.1:{buyers.port}/silent"
    with socket.create_connection(("127.0.0.1", buyers.port), timeout=0.3) as sock:
        sock.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        sock.settimeout(5)
        buyers.stop()
        assert sock.recv(1024) == b""
