"""What the services refuse, in their own words; errors.py turns these into HTTP answers.

Each error carries a stable snake_case code (the API's error code) and a
message for people. The services raise them; they know nothing of HTTP.
"""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Unauthenticated(DomainError):
    """No credential, or one we do not know."""


class NotFound(DomainError):
    """No such thing, or none this caller may see."""


class Invalid(DomainError):
    """A value that breaks a rule: a bad number, tag, name or setting."""


class Conflict(DomainError):
    """Taken already: a name, an address, a number, a username."""


class RateLimited(DomainError):
    """Over a limit that lifts by itself after `retry_after` seconds."""

    def __init__(self, code: str, message: str, retry_after: int):
        super().__init__(code, message)
        self.retry_after = retry_after
