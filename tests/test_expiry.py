"""Reservations that pass expires_at unused: marked expired within seconds,
their buyer's slot free at once, and gone from Kamailio's memory soon after."""

from __future__ import annotations

from sqlalchemy import select

from app.kamailio_rpc import RPCError
from app.models import Reservation
from tests.market import expire
from tests.polling import eventually


def test_an_unused_reservation_is_marked_expired_and_leaves_kamailios_memory(client, market,
                                                                             sessions, rpc):
    m = market(ttl=1)
    uuid = client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]["uuid"]

    def stored_status():
        with sessions() as db:
            return db.scalar(select(Reservation.status).where(Reservation.uuid == uuid))

    # Kamailio's sweep runs every 2 s; the htable entry lives 5 s past expiry.
    assert eventually(lambda: stored_status() == "expired", timeout=6)

    def gone_from_memory():
        try:
            rpc.call("htable.get", "rsv", uuid)
        except RPCError:
            return True
        return False

    assert eventually(gone_from_memory, timeout=12)


def test_an_expired_confirmation_frees_its_buyers_slot(client, market, sessions):
    m = market(targets=[{"concurrency_cap": 1}], auto_confirm=True)
    ping = lambda: client.post("/rtbs.json", query_string={"key": m.key}).get_json()["rtb"]  # noqa: E731
    held = ping()
    assert held["status"] == "confirmed"
    assert ping() == {"status": "rejected", "reason": "capped"}
    expire(sessions, held["uuid"])
    assert ping()["status"] == "confirmed"

