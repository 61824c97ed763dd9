"""A procedure's error after its row (Galera's 1213 when another node's write
aborts a transaction the procedure left open) is raised, not lost."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import one_called, try_again

# Answers its row, then fails as a transaction aborted by a conflicting write would.
ROW_THEN_ABORTED = """
CREATE OR REPLACE PROCEDURE test_row_then_aborted()
BEGIN
  SELECT 'answered' AS outcome;
  SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found';
END
"""


@pytest.fixture(scope="module")
def procedure(sessions):
    with sessions() as db:
        db.execute(text(ROW_THEN_ABORTED))
        db.commit()
    yield "CALL test_row_then_aborted()"
    with sessions() as db:
        db.execute(text("DROP PROCEDURE test_row_then_aborted"))
        db.commit()


def test_an_error_after_a_call_s_row_is_raised_as_one_to_try_again(sessions, procedure):
    with sessions() as db, pytest.raises(DBAPIError) as raised:
        one_called(db.execute(text(procedure)))
    assert try_again(raised.value)


def test_reading_only_the_row_loses_that_error(sessions, procedure):
    # Why one_called exists: SQLAlchemy closes the cursor without raising it.
    with sessions() as db:
        assert db.execute(text(procedure)).one().outcome == "answered"


def test_an_answer_that_ends_well_gives_its_row(sessions):
    with sessions() as db:
        assert one_called(db.execute(text("SELECT 'fine' AS outcome"))).outcome == "fine"
