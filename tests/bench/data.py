"""The bench's market, made through app.admin as rtbctl makes it, and bulk reservations by SQL.

Pings go to 20 campaigns of 10 targets each, with mixed caps, business
hours, geo and tag rules, from 50 publishers holding 100 keys (a third
auto-confirm). Calls go to a campaign of their own whose targets all lead
to the bench's SIPp buyer, from publishers whitelisted on their own
loopback addresses; each of those targets has a concurrency, an hourly and
a daily cap (CALL_CAPS), set above what the bench dials, so that every
claim counts against all three and none refuses a call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from app import admin
from tests.market import make_market

CAMPAIGNS = 20
TARGETS_PER_CAMPAIGN = 10
PUBLISHERS = 50
KEYS_PER_PUBLISHER = 2
CALL_TARGETS = 10
# Per call target: above the bench's peak (1,600 calls/s of ~0.2 s each, and
# about 70,000 claims in a run, over 10 targets), so caps are checked, never hit.
CALL_CAPS = {"concurrency_cap": 1_000, "hourly_cap": 100_000, "daily_cap": 1_000_000}
# Publishers that dial: SIPp sources share the call load; the last one does the fresh pairs.
CALLER_IPS = ("127.0.1.11", "127.0.1.12", "127.0.1.13", "127.0.1.14", "127.0.1.15")
HOURS = (None, None, "mon-fri 09:00-17:00", "daily 07:00-23:00", "sat,sun 10:00-16:00; mon-fri 08:00-20:00",
         "daily 06:00-02:00")
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
STATES = (None, None, None, "CA,TX,FL,NY", "IL,OH,PA,GA,NC,MI", "WA,OR,NV,AZ,CO")


@dataclass(frozen=True)
class Caller:
    ip: str
    publisher_id: int
    key: str
    key_id: int


@dataclass
class Market:
    keys: list[str]
    auto_confirm: int
    callers: list[Caller]
    call_campaign: int
    call_targets: list[int]


def _target_rules(rng: random.Random) -> dict:
    caps = {name: rng.choice((None, None, size)) for name, size in
            (("concurrency_cap", rng.randint(2, 50)), ("hourly_cap", rng.randint(50, 500)),
             ("daily_cap", rng.randint(500, 5000)), ("monthly_cap", rng.randint(5000, 100000)))}
    tags = {"insured": ["yes"]} if rng.random() < 0.15 else None
    return {**caps, "hours": rng.choice(HOURS), "timezone": rng.choice(ZONES),
            "states": rng.choice(STATES), "zips": "1,9" if rng.random() < 0.05 else None,
            "tag_rules": tags, "priority": rng.randint(1, 3), "weight": rng.randint(1, 5)}


def _ping_market(db: Session, buyer_uri: str, rng: random.Random) -> tuple[list[str], int]:
    campaigns = [admin.add_campaign(db, f"campaign-{n}").id for n in range(CAMPAIGNS)]
    for campaign in campaigns:
        for _ in range(TARGETS_PER_CAMPAIGN):
            admin.add_target(db, campaign, buyer_uri, Decimal(rng.randint(200, 4000)) / 100,
                             rng.choice((30, 60, 90, 120)), **_target_rules(rng))
    keys, auto = [], 0
    for n in range(PUBLISHERS):
        publisher = admin.add_publisher(db, f"publisher-{n}").id
        for campaign in rng.sample(campaigns, KEYS_PER_PUBLISHER):
            auto_confirm = len(keys) % 3 == 0
            keys.append(admin.add_key(db, campaign, publisher, auto_confirm=auto_confirm)[1])
            auto += auto_confirm
    return keys, auto


def load_market(sessions: sessionmaker[Session], buyer_uri: str, seed: int = 5) -> Market:
    rng = random.Random(seed)
    with sessions() as db:
        keys, auto = _ping_market(db, buyer_uri, rng)
        db.commit()
    call_targets = [{"sip_uri": buyer_uri, "payout": "10", **CALL_CAPS}] * CALL_TARGETS
    first = make_market(sessions, call_targets, ip=CALLER_IPS[0], ttl=1800)
    others = [make_market(sessions, [], ip=ip, campaign_id=first.campaign_id, ttl=1800)
              for ip in CALLER_IPS[1:]]
    callers = [Caller(m.ip, m.publisher_id, m.key, m.key_id) for m in (first, *others)]
    return Market(keys, auto, callers, first.campaign_id, first.target_ids)


def make_reservations(conn: Connection, market: Market, caller: Caller, count: int) -> list[str]:
    """count reserved (unconfirmed) reservations for a caller, spread over the call
    targets (by rank: under Galera their ids step by the number of nodes)."""
    first = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM reservations")).scalar()
    conn.execute(text(
        "INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, payout,"
        " min_seconds, tags, status, candidates, expires_at)"
        " SELECT UUID(), :key, :publisher, :campaign, t.id, t.payout, t.min_seconds, '{}',"
        " 'reserved', t.id, NOW() + INTERVAL 30 MINUTE"
        f" FROM seq_1_to_{int(count)} s JOIN (SELECT id, payout, min_seconds,"
        " ROW_NUMBER() OVER (ORDER BY id) - 1 AS n FROM targets WHERE campaign_id = :campaign) t"
        " ON t.n = s.seq % :targets"),
        {"key": caller.key_id, "publisher": caller.publisher_id, "campaign": market.call_campaign,
         "targets": len(market.call_targets)})
    conn.commit()
    return list(conn.execute(text(
        "SELECT uuid FROM reservations WHERE id > :first AND key_id = :key ORDER BY id"),
        {"first": first, "key": caller.key_id}).scalars())


# A spent history: 60 % expired unused, 30 % completed calls, 10 % no-target,
# created over the last 90 days, on every key and every target of its campaign.
_HISTORY = """
INSERT INTO reservations (uuid, key_id, publisher_id, campaign_id, target_id, caller_number,
                          payout, min_seconds, tags, status, candidates, created_at, expires_at,
                          confirmed_at)
SELECT UUID(), p.key_id, p.publisher_id, p.campaign_id, p.target_id,
       CONCAT('+1202555', LPAD(s.seq % 10000, 4, '0')), 10, 60, '{{}}',
       ELT(1 + s.seq % 10, 'expired', 'expired', 'expired', 'expired', 'expired', 'expired',
           'completed', 'completed', 'completed', 'no-target'),
       p.target_id, NOW() - INTERVAL {age} SECOND,
       NOW() - INTERVAL {age} SECOND + INTERVAL 60 SECOND,
       IF(s.seq % 10 IN (6, 7, 8), NOW() - INTERVAL {age} SECOND, NULL)
FROM seq_1_to_{count} s JOIN bench_pairs p ON p.n = s.seq % {pairs}
"""


# The ping log of that history: one row per reservation, and as many again
# rejected (40 % no target, 30 % caps full, 30 % outside hours).
_PING_HISTORY = """
INSERT INTO pings (key_id, created_at, outcome, reason, reservation_id, duration_ms)
SELECT p.key_id, NOW() - INTERVAL {age} SECOND,
       IF(s.seq % 2 = 0, 'reserved', 'rejected'),
       IF(s.seq % 2 = 0, NULL, ELT(1 + s.seq % 10, 'no_target', 'no_target', 'no_target',
          'no_target', 'caps_full', 'caps_full', 'caps_full', 'closed', 'closed', 'closed')),
       NULL, 5
FROM seq_1_to_{count} s JOIN bench_pairs p ON p.n = s.seq % {pairs}
"""


def _age(offset: int) -> str:
    """Seconds before now of the chunk's row s.seq: rows 7 s apart, over the last 90 days."""
    return f"((s.seq + {int(offset)}) * 7 % 7776000)"


def fill_history(conn: Connection, total: int, progress, chunk: int = 10_000) -> int:
    """Add spent reservations, and as many ping-log rows, until the reservations
    table holds `total` rows; returns the count. Chunks are small: with the usage
    triggers, a chunk of 10⁵ took longer than the engine's 10 s read timeout."""
    conn.execute(text(
        "CREATE TEMPORARY TABLE IF NOT EXISTS bench_pairs (PRIMARY KEY (n))"
        " SELECT ROW_NUMBER() OVER (ORDER BY k.id, t.id) - 1 AS n, k.id AS key_id,"
        " k.publisher_id, k.campaign_id, t.id AS target_id"
        " FROM postback_keys k JOIN targets t ON t.campaign_id = k.campaign_id"))
    pairs = conn.execute(text("SELECT COUNT(*) FROM bench_pairs")).scalar()
    have = conn.execute(text("SELECT COUNT(*) FROM reservations")).scalar()
    while have < total:
        count = min(chunk, total - have)
        for statement in (_HISTORY, _PING_HISTORY):
            conn.execute(text(statement.format(count=count, pairs=pairs, age=_age(have))))
        conn.commit()
        have += count
        if have % 100_000 < chunk or have == total:
            progress(f"reservations table: {have:,} rows")
    return have
