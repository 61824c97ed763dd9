"""rtbctl operator: accounts that store only a salted slow hash of their
password, and API tokens shown once and stored as their digest."""

from __future__ import annotations

import uuid as uuidlib

from sqlalchemy import select
from werkzeug.security import check_password_hash

from app.credentials import key_hash
from app.models import Operator
from tests.rtbctl import run, run_json

PASSWORD = "correct horse battery"


def fresh_name() -> str:
    return f"ops-{uuidlib.uuid4().hex[:8]}"


def stored(sessions, name: str) -> Operator:
    with sessions() as db:
        return db.scalar(select(Operator).where(Operator.name == name))


def test_an_operator_keeps_only_a_salted_scrypt_hash_of_the_password(env, database, sessions):
    first, second = fresh_name(), fresh_name()
    for name in (first, second):
        assert run_json(env, "operator", "add", name, "--password-stdin",
                        stdin=PASSWORD + "\n")["name"] == name
    hashes = [stored(sessions, name).password_hash for name in (first, second)]
    assert all(h.startswith("scrypt:") and PASSWORD not in h for h in hashes)
    assert hashes[0] != hashes[1]
    assert check_password_hash(hashes[0], PASSWORD)
    assert not check_password_hash(hashes[0], PASSWORD + "!")


def test_operator_add_asks_for_the_password_twice(env, database, sessions):
    name = fresh_name()
    mismatch = run(env, "operator", "add", name, stdin=f"{PASSWORD}\nsomething else\n")
    assert stored(sessions, name) is None, mismatch.stdout
    done = run(env, "operator", "add", name, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    assert check_password_hash(stored(sessions, name).password_hash, PASSWORD)


def test_a_short_password_and_a_taken_name_are_refused(env, database):
    name = fresh_name()
    short = run(env, "operator", "add", name, "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    run_json(env, "operator", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    again = run(env, "operator", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists" in again.stderr


def test_a_token_is_printed_once_and_only_its_digest_is_stored(env, database, sessions):
    name = fresh_name()
    run_json(env, "operator", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    done = run(env, "operator", "token", name)
    assert done.returncode == 0, done.stderr
    token = done.stdout.split("token: ")[1].strip()
    assert "not shown again" in done.stderr
    assert stored(sessions, name).token_hash == key_hash(token) != token


def test_a_new_token_replaces_the_one_before(env, database, sessions):
    name = fresh_name()
    run_json(env, "operator", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    first = run_json(env, "operator", "token", name)["token"]
    second = run_json(env, "operator", "token", name)["token"]
    assert first != second
    assert stored(sessions, name).token_hash == key_hash(second)


def test_a_token_for_no_such_operator_is_refused(env, database):
    done = run(env, "operator", "token", fresh_name())
    assert done.returncode == 1 and "no operator named" in done.stderr
