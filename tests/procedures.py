"""Kamailio's side of schema.sql, called as it calls it: claim a reservation
for a call, and record that call's events by the id and token the claim gave."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text


@dataclass
class Claim:
    result: str
    call: int | None
    token: str | None


def claim(db, uuid: str, publisher: int, call_id: str, source: str = "127.0.0.1") -> Claim:
    db.execute(text("CALL rtb_confirm(:u, :p, TRUE, TRUE, :c, :s, 'sip', @r, @d, @call, @token)"),
               {"u": uuid, "p": publisher, "c": call_id, "s": source})
    return Claim(*db.execute(text("SELECT @r, @call, @token")).one())


def call_event(db, claimed: Claim, event: str, code: int = 0, at: float | None = None) -> None:
    db.execute(text("CALL rtb_call_event(:call, :token, :event, :code, :at)"),
               {"call": claimed.call, "token": claimed.token, "event": event, "code": code, "at": at})
