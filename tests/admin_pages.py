"""Helpers for the admin pages' tests: an operator account, and the CSRF
token a page's form carries."""

from __future__ import annotations

import re
import uuid as uuidlib

from app import operators

PASSWORD = "a long enough password"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_operator(sessions) -> str:
    name = f"admin-{uuidlib.uuid4().hex[:8]}"
    with sessions() as db:
        operators.add(db, name, PASSWORD)
        db.commit()
    return name


def csrf_token(client) -> str:
    return TOKEN.search(client.get("/admin/login").get_data(as_text=True)).group(1)
