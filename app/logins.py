"""Logging in to the admin pages with an operator's name and password, with
failed attempts throttled per operator name and per source address.

The database decides, not a worker's memory: every attempt first counts
itself as a failure in login_failures (one upsert per scope, whose row lock
orders racing attempts), and only then is the password checked. A scope over
its limit is refused without looking at the password; a right password takes
its count back. Functions flush; the caller commits, also after a refusal, so
that the failure stays counted.
"""

from __future__ import annotations

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from app.domain_errors import RateLimited, Unauthenticated
from app.models import LoginFailure, Operator

WINDOW_SECONDS = 900
# Failures a window allows: an operator mistyping, an office behind one NAT.
LIMITS = {"n": 5, "a": 20}
# Checked against when no operator has the name, so that a wrong name takes
# as long as a wrong password and tells nobody which names exist.
_UNKNOWN = "scrypt:32768:8:1$0000000000000000$" + "0" * 128

_COUNT = text("""
INSERT INTO login_failures (scope, failures, window_start) VALUES (:scope, 1, NOW())
ON DUPLICATE KEY UPDATE
  failures = IF(window_start <= NOW() - INTERVAL :window SECOND, 1, failures + 1),
  window_start = IF(window_start <= NOW() - INTERVAL :window SECOND, NOW(), window_start)""")


def scopes(name: str, address: str) -> dict[str, str]:
    return {"n": f"n:{name[:64]}", "a": f"a:{address[:64]}"}


def log_in(session: Session, name: str, password: str, address: str) -> Operator:
    """The operator with this name and password, or Unauthenticated; RateLimited
    when the name or the address has failed too often in the last window."""
    counted = scopes(name, address)
    for scope in counted.values():
        session.execute(_COUNT, {"scope": scope, "window": WINDOW_SECONDS})
    failures = dict(session.execute(
        select(LoginFailure.scope, LoginFailure.failures)
        .where(LoginFailure.scope.in_(counted.values()))).all())
    if any(failures[scope] > LIMITS[kind] for kind, scope in counted.items()):
        raise RateLimited("too_many_logins", "Too many failed logins; try again later.",
                          WINDOW_SECONDS)
    operator = session.scalar(select(Operator).where(Operator.name == name))
    if not check_password_hash(operator.password_hash if operator else _UNKNOWN, password) \
            or operator is None:
        raise Unauthenticated("wrong_password", "That name and password do not match.")
    session.execute(delete(LoginFailure).where(LoginFailure.scope == counted["n"]))
    session.execute(update(LoginFailure).where(LoginFailure.scope == counted["a"],
                                               LoginFailure.failures > 0)
                    .values(failures=LoginFailure.failures - 1))
    return operator
