"""A web worker's copy of the keys and targets its pings read, and the version
of them it holds.

Every change to a target or a postback key moves ping_cache_version (triggers
in schema.sql). A ping names the version its cache holds; rtb_ping answers
'stale' when the database has moved on, and the worker forgets everything and
reads again. So an edit takes effect on the next ping, and a ping costs no
query of its own for its key and targets while nothing changes.

A worker's threads share it: a lock keeps a key, its targets and the
version they were read at together.
"""

from __future__ import annotations

import threading

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from app.models import Campaign, PostbackKey, Target
from app.reservations import digest_of, unknown_key

_VERSION = text("SELECT version FROM ping_cache_version WHERE id = 1")


class PingCache:
    def __init__(self) -> None:
        self.version: int | None = None
        self._keys: dict[str, PostbackKey] = {}
        self._targets: dict[int, list[Row]] = {}
        self._lock = threading.RLock()

    def forget(self) -> None:
        """Read everything again on its next use (rtb_ping said 'stale')."""
        with self._lock:
            self.version = None

    def _fresh(self, session: Session) -> None:
        """Read the version before what it covers: data newer than the version
        it is held under only costs one more 'stale'."""
        version = session.scalar(_VERSION)
        if version != self.version:
            self.version, self._keys, self._targets = version, {}, {}

    def lookup(self, session: Session, key: str | None
               ) -> tuple[PostbackKey, list[Row], int | None]:
        """A key and its campaign's enabled targets, and the version they are of."""
        with self._lock:
            found = self.key(session, key)
            version = self.version
            targets = self.targets(session, found.campaign_id)
            if self.version != version:
                found = self.key(session, key)
            return found, targets, self.version

    def key(self, session: Session, key: str | None) -> PostbackKey:
        digest = digest_of(key)
        with self._lock:
            return self._key(session, digest)

    def _key(self, session: Session, digest: str) -> PostbackKey:
        found = self._keys.get(digest) if self.version is not None else None
        if found is None:
            self._fresh(session)
            found = session.scalar(select(PostbackKey).where(PostbackKey.key_hash == digest))
            if found is None:
                raise unknown_key()
            session.expunge(found)
            self._keys[digest] = found
        return found

    def targets(self, session: Session, campaign_id: int) -> list[Row]:
        """The campaign's enabled targets, as plain rows (bidding only reads
        them), each with the campaign's margin on live bids."""
        found = self._targets.get(campaign_id) if self.version is not None else None
        if found is None:
            self._fresh(session)
            table = Target.__table__
            found = session.execute(
                select(table, Campaign.margin_percent, Campaign.margin_amount,
                       Campaign.min_margin, Campaign.allow_loss)
                .join(Campaign, Campaign.id == table.c.campaign_id)
                .where(table.c.campaign_id == campaign_id, table.c.enabled.is_(True))).all()
            self._targets[campaign_id] = found
        return found
