"""The one market builder: a publisher, a campaign with its targets and a key,
made through app.admin as rtbctl makes them. The `market` fixture, the
private stack (faults, soak) and the bench's callers all build with it; and
expire(), which ages a reservation past its ttl without waiting for it."""

from __future__ import annotations

import itertools
import uuid as uuidlib
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app import admin

DEFAULT_TARGET = {"sip_uri": "sip:buyer@127.0.0.1:9", "payout": "12.5", "min_seconds": 60}

_loopback = itertools.count(2)


def next_loopback() -> str:
    """A fresh 127.0.x.y per publisher, so whitelists never overlap across tests."""
    n = next(_loopback)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@dataclass
class Market:
    key: str
    key_id: int
    publisher_id: int
    campaign_id: int
    target_ids: list[int]
    ip: str | None

    @property
    def target_id(self) -> int:
        return self.target_ids[0]


def make_market(sessions: sessionmaker[Session], targets: list[dict] | None = None, *,
                ip: str | None = None, whitelist: bool = True, publisher_id: int | None = None,
                campaign_id: int | None = None, **key_settings) -> Market:
    """A publisher whitelisted on `ip` (a fresh loopback address by default),
    a campaign with these targets (admin.add_target keywords over
    DEFAULT_TARGET; one default target when None) and a key with these
    settings, in one commit.

    Given publisher_id or campaign_id, that one is used instead of a new one.
    """
    suffix = uuidlib.uuid4().hex[:10]
    with sessions() as db:
        if publisher_id is None:
            publisher_id = admin.add_publisher(db, f"publisher-{suffix}").id
        ip = (ip or next_loopback()) if whitelist else None
        if ip:
            admin.allow_ip(db, publisher_id, f"{ip}/32")
        if campaign_id is None:
            campaign_id = admin.add_campaign(db, f"campaign-{suffix}").id
        target_ids = [add_target(db, campaign_id, target)
                      for target in ([{}] if targets is None else targets)]
        key_row, key = admin.add_key(db, campaign_id, publisher_id, **key_settings)
        db.commit()
    return Market(key, key_row.id, publisher_id, campaign_id, target_ids, ip)


def add_target(db: Session, campaign_id: int, target: dict) -> int:
    rules = {**DEFAULT_TARGET, **target}
    if rules["payout"] is not None:
        rules["payout"] = Decimal(str(rules["payout"]))
    return admin.add_target(db, campaign_id, **rules).id


def expire(sessions: sessionmaker[Session], uuid: str) -> None:
    """Move a reservation's expiry a second into the past, as if its ttl had
    run out; the hold on its pool number, which reserving set to the same
    moment, ends with it. Waiting out a ttl instead costs seconds per test."""
    with sessions() as db:
        db.execute(text("UPDATE reservations SET expires_at = NOW() - INTERVAL 1 SECOND"
                        " WHERE uuid = :uuid"), {"uuid": uuid})
        db.execute(text("UPDATE numbers n JOIN reservations r ON r.id = n.held_by"
                        " SET n.held_until = r.expires_at WHERE r.uuid = :uuid"), {"uuid": uuid})
        db.commit()
