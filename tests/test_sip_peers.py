"""The tests' SIPp buyers: started, they are listening; a port they cannot
bind is an error at once, not a call that times out later."""

from __future__ import annotations

import socket

import pytest

from tests.sip import Buyer, listening


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_a_buyer_is_listening_on_its_sip_and_media_ports_once_started(tmp_path, transport):
    buyer = Buyer(tmp_path, transport=transport)
    try:
        assert listening(buyer.port, transport, buyer.proc.pid)
        assert listening(buyer.media_port, "u1", buyer.proc.pid)
        assert listening(buyer.media_port + 2, "u1", buyer.proc.pid)
    finally:
        buyer.stop()


def test_a_buyer_on_a_taken_port_says_why_it_did_not_start(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="Address already in use"):
            Buyer(tmp_path, port=port)
