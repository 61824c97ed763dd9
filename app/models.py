"""Typed SQLAlchemy models of schema.sql (a test keeps the two in step)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import (JSON, BigInteger, Column, Computed, Date, DateTime, ForeignKey, Integer, Numeric, String,
                        Table, Text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

intpk = Annotated[int, mapped_column(primary_key=True)]
money = Annotated[Decimal, mapped_column(Numeric(10, 2))]
timestamp = Annotated[datetime, mapped_column(DateTime)]
e164 = Annotated[str | None, mapped_column(String(16))]


class Base(DeclarativeBase):
    pass


class Publisher(Base):
    __tablename__ = "publishers"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128))
    fallback_sip_uri: Mapped[str | None] = mapped_column(String(255))
    margin_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    margin_amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    min_margin: Mapped[money] = mapped_column(default=Decimal(0))
    allow_loss: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Gateway(Base):
    """A carrier gateway for phone-number targets; its password only the app and,
    through rtb_gateway_auth(), the edge read."""

    __tablename__ = "gateways"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=5060)
    transport: Mapped[str] = mapped_column(String(3), default="udp")
    prefix: Mapped[str] = mapped_column(String(16), default="+")
    username: Mapped[str | None] = mapped_column(String(64))
    password: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Target(Base):
    __tablename__ = "targets"
    id: Mapped[intpk]
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    sip_uri: Mapped[str | None] = mapped_column(String(255))
    number: Mapped[e164]
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"))
    sip_headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    payout: Mapped[money]
    min_seconds: Mapped[int]
    enabled: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(default=1)
    weight: Mapped[int] = mapped_column(default=1)
    concurrency_cap: Mapped[int | None]
    hourly_cap: Mapped[int | None]
    daily_cap: Mapped[int | None]
    monthly_cap: Mapped[int | None]
    hours: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    states: Mapped[str | None] = mapped_column(String(255))
    zips: Mapped[str | None] = mapped_column(String(1024))
    tag_rules: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    bid_url: Mapped[str | None] = mapped_column(String(2048))
    bid_method: Mapped[str] = mapped_column(String(4), default="POST")
    bid_timeout_ms: Mapped[int] = mapped_column(default=300)
    bid_body: Mapped[str | None] = mapped_column(Text)
    bid_headers: Mapped[list[str] | None] = mapped_column(JSON)
    max_bid: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    bid_fields: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class PostbackKey(Base):
    __tablename__ = "postback_keys"
    id: Mapped[intpk]
    key_hash: Mapped[str] = mapped_column(String(64))
    key_prefix: Mapped[str] = mapped_column(String(8))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    ttl_seconds: Mapped[int] = mapped_column(default=60)
    inbound_number: Mapped[e164]
    auto_confirm: Mapped[bool] = mapped_column(default=False)
    duplicate_scope: Mapped[str] = mapped_column(String(8), default="key")
    rate_limit: Mapped[int | None]
    require_caller_number: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")
    postback_url: Mapped[str | None] = mapped_column(String(2048))
    # Signs postbacks; read only by the postback worker and `key edit`.
    postback_secret: Mapped[str | None] = mapped_column(String(64), deferred=True)


class Reservation(Base):
    __tablename__ = "reservations"
    id: Mapped[intpk]
    uuid: Mapped[str] = mapped_column(String(36))
    key_id: Mapped[int] = mapped_column(ForeignKey("postback_keys.id"))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    caller_number: Mapped[e164]
    inbound_number: Mapped[e164]
    payout: Mapped[money]
    min_seconds: Mapped[int]
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    sip_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    candidates: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    calls: Mapped[list[Call]] = relationship(order_by="Call.id", lazy="selectin")


class Call(Base):
    """A call Kamailio let through; written only by schema.sql's procedures."""

    __tablename__ = "calls"
    id: Mapped[intpk]
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    call_id: Mapped[str] = mapped_column(String(255))
    via: Mapped[str] = mapped_column(String(4))
    source: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[timestamp]
    answered_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    talk_seconds: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    final_status: Mapped[int | None]
    converted: Mapped[bool]
    # The secret a call's events must name; the edge alone learns it.
    token: Mapped[str] = mapped_column(String(32), deferred=True)
    open_call_id: Mapped[str | None] = mapped_column(String(255), Computed(
        "IF(ended_at IS NULL, call_id, NULL)", persisted=True))


class Postback(Base):
    """A call's end to post to its key's postback URL; queued by schema.sql's trigger."""

    __tablename__ = "postbacks"
    id: Mapped[intpk]
    call_row_id: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[int] = mapped_column(ForeignKey("postback_keys.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP(3)")
    next_attempt_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP(3)")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))


class Carrier(Base):
    __tablename__ = "carriers"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Number(Base):
    """A pool number; held_by/held_until while one reservation has it alone."""

    __tablename__ = "numbers"
    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    held_by: Mapped[int | None] = mapped_column(BigInteger)
    held_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class CallerReservation(Base):
    """Ping Shield: the live reservation of a caller within a key or a campaign."""

    __tablename__ = "caller_reservations"
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(16), primary_key=True)
    reservation_id: Mapped[int | None] = mapped_column(BigInteger)


class KeyRateWindow(Base):
    __tablename__ = "key_rate_windows"
    key_id: Mapped[int] = mapped_column(ForeignKey("postback_keys.id"), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    pings: Mapped[int]


class Ping(Base):
    __tablename__ = "pings"
    id: Mapped[intpk]
    key_id: Mapped[int] = mapped_column(ForeignKey("postback_keys.id"))
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP(3)")
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    reservation_id: Mapped[int | None] = mapped_column(BigInteger)
    duration_ms: Mapped[Decimal] = mapped_column(Numeric(10, 3))


class Bid(Base):
    """What one pass-through target answered one ping (app/bidding.py)."""

    __tablename__ = "bids"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("postback_keys.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(32))
    duration_ms: Mapped[Decimal] = mapped_column(Numeric(10, 3))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    payout: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    min_seconds: Mapped[int | None]
    bid_id: Mapped[str | None] = mapped_column(String(255))
    destination: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)


class PingDay(Base):
    """Pings older than RTB_RETENTION_DAYS, rolled up by rtb_retain(): target_id 0
    is none, reason '' is none; duration_ms is their durations' sum."""

    __tablename__ = "ping_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key_id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    pings: Mapped[int]
    duration_ms: Mapped[Decimal] = mapped_column(Numeric(16, 3))
    max_duration_ms: Mapped[Decimal] = mapped_column(Numeric(10, 3))


class ReservationDay(Base):
    """Reservations (by the day made) and calls (by the day claimed) older than
    RTB_RETENTION_DAYS, rolled up by rtb_retain()."""

    __tablename__ = "reservation_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key_id: Mapped[int] = mapped_column(primary_key=True)
    publisher_id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(primary_key=True)
    reservations: Mapped[int] = mapped_column(default=0)
    calls: Mapped[int] = mapped_column(default=0)
    answered: Mapped[int] = mapped_column(default=0)
    converted: Mapped[int] = mapped_column(default=0)
    talk_seconds: Mapped[Decimal] = mapped_column(Numeric(16, 3), default=0)
    payout: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=0)


class TargetUsageCount(Base):
    """A target's settled charges in one hour ('h'), day or month; kept by schema.sql's triggers."""

    __tablename__ = "target_usage_counts"
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(1), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    charges: Mapped[int]


PERIODS = ("this_hour", "today", "this_month")


def _usage_view(name: str, *figures: str) -> Table:
    return Table(name, Base.metadata, Column("target_id", Integer, primary_key=True),
                 *(Column(figure, BigInteger, nullable=False) for figure in figures))


# Views (schema.sql): what each target has taken against its caps, from the
# counters, and the same periods counted again from history.
target_usage = _usage_view("target_usage", "live", *PERIODS)
target_usage_recount = _usage_view("target_usage_recount", *PERIODS)


class Operator(Base):
    """Someone who runs this instance: rtbctl operator; only hashes are stored."""

    __tablename__ = "operators"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class LoginFailure(Base):
    """Failed admin logins in the current window of one operator name or source address."""

    __tablename__ = "login_failures"
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int]
    window_start: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Subscriber(Base):
    """Kamailio auth_db's table; only HA1 is ever written."""

    __tablename__ = "subscriber"
    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(64), default="")
    password: Mapped[str] = mapped_column(String(64), default="")
    ha1: Mapped[str] = mapped_column(String(128))
    ha1b: Mapped[str] = mapped_column(String(128))
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("publishers.id"))


class Address(Base):
    """Kamailio permissions' table; tag is 'publisher:<id>'."""

    __tablename__ = "address"
    id: Mapped[intpk]
    grp: Mapped[int] = mapped_column(default=1)
    ip_addr: Mapped[str] = mapped_column(String(50))
    mask: Mapped[int] = mapped_column(default=32)
    port: Mapped[int] = mapped_column(default=0)
    tag: Mapped[str | None] = mapped_column(String(64))
