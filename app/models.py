"""Typed SQLAlchemy models of schema.sql (a test keeps the two in step)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from sqlalchemy import JSON, DateTime, ForeignKey, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


class Target(Base):
    __tablename__ = "targets"
    id: Mapped[intpk]
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    sip_uri: Mapped[str] = mapped_column(String(255))
    payout: Mapped[money]
    min_seconds: Mapped[int]
    enabled: Mapped[bool] = mapped_column(default=True)
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
    created_at: Mapped[timestamp] = mapped_column(server_default="CURRENT_TIMESTAMP")


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
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    created_at: Mapped[timestamp]
    expires_at: Mapped[timestamp]
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    call_id: Mapped[str | None] = mapped_column(String(255))
    claimed_from: Mapped[str | None] = mapped_column(String(64))


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
