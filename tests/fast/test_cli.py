"""rtbctl refuses what it cannot read before it opens the database."""

from __future__ import annotations

import pytest

from tests.rtbctl import run


@pytest.mark.parametrize("args, message", [
    (["target", "edit", "1", "--concurrency-cap", "five"], "'five' is not a whole number or 'none'"),
    (["target", "add", "1", "--sip-uri", "sip:b@127.0.0.1", "--payout", "1", "--min-seconds",
      "1", "--hourly-cap", "-3"], "'-3' is not a whole number or 'none'"),
    (["key", "edit", "abcdefgh", "--rate-limit", "fast"], "'fast' is not like 10/s"),
    (["key", "add", "1", "1", "--duplicate-scope", "everywhere"], "'everywhere' is not one of"),
    (["pings", "--since", "2 weeks"], "'2 weeks' is not like 30m, 1h or 7d"),
])
def test_a_value_rtbctl_cannot_read_is_a_usage_error(env_without_database, args, message):
    done = run(env_without_database, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_setting_is_one_line_naming_the_variable(env_without_database):
    done = run({**env_without_database, "RTB_HTTP_PORT": "eighty"}, "campaign", "add", "never-made")
    assert done.returncode == 1
    assert "RTB_HTTP_PORT" in done.stderr and done.stderr.count("\n") == 1
