"""The demo market: a publisher whitelisted on 127.0.0.2, a campaign, three
buyers and a key, made through app.admin as rtbctl makes them.

Seeding again finds the same publisher and campaign by name and sets the
buyers back to the demo's terms (their SIPp ports change from run to run).
Only the key's hash is stored, so the key itself is kept in the demo's state
folder, readable by its owner alone; it is made anew if that file is gone.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import admin
from app.domain_errors import NotFound
from app.models import Campaign, Publisher

PUBLISHER = "demo publisher"
CAMPAIGN = "demo solar"
PUBLISHER_IP = "127.0.0.2"
# Highest payout wins while it is open and under its caps; the last is always open.
BUYERS = (
    {"payout": Decimal("25"), "min_seconds": 3, "concurrency_cap": 1,
     "hours": "mon-fri 08:00-20:00", "timezone": "America/New_York"},
    {"payout": Decimal("15"), "min_seconds": 3, "concurrency_cap": 2, "hourly_cap": 60,
     "hours": "mon-sun 07:00-23:00", "timezone": "America/Los_Angeles"},
    {"payout": Decimal("8"), "min_seconds": 2},
)


def _named(db: Session, model, name: str, add):
    return db.scalar(select(model).where(model.name == name)) or add(db, name)


def _key(db: Session, key_file: Path, campaign_id: int, publisher_id: int) -> str:
    if key_file.exists():
        key = key_file.read_text().strip()
        try:
            found = admin.find_key(db, key)
        except NotFound:
            found = None
        if found is not None and (found.campaign_id, found.publisher_id) == (campaign_id,
                                                                             publisher_id):
            return key
    _, key = admin.add_key(db, campaign_id, publisher_id, ttl=60)
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    return key


def seed(db: Session, buyer_uris: list[str], key_file: Path) -> str:
    """Make or refresh the market in one transaction; returns the key."""
    publisher = _named(db, Publisher, PUBLISHER, admin.add_publisher)
    admin.allow_ip(db, publisher.id, f"{PUBLISHER_IP}/32")
    campaign = _named(db, Campaign, CAMPAIGN, admin.add_campaign)
    targets = admin.list_targets(db, campaign.id)
    for i, (terms, uri) in enumerate(zip(BUYERS, buyer_uris, strict=True)):
        rules = {"enabled": True, "hours": "", "concurrency_cap": None, "hourly_cap": None,
                 "timezone": "UTC", **terms}
        if i < len(targets):
            admin.edit_target(db, targets[i], sip_uri=uri, **rules)
        else:
            admin.add_target(db, campaign.id, uri, **rules)
    key = _key(db, key_file, campaign.id, publisher.id)
    db.commit()
    return key
