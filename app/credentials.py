"""Secrets that are shown once and stored only as digests."""

from __future__ import annotations

import hashlib
import secrets

KEY_BYTES = 24


def new_postback_key() -> str:
    return secrets.token_hex(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ha1(username: str, realm: str, password: str) -> str:
    """Digest HA1 as Kamailio's auth_db reads it: MD5(user:realm:password)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()
