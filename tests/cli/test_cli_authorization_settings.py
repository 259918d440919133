"""The organisation's settings of mailboxes' own OAuth2 authorizations (``mailbox authorize``):
`settings set --oauth-refresh-days --oauth-warning-days`, shown back and refused in one line."""

from __future__ import annotations

from tests.cli.conftest import Cli


def test_settings_set_the_refresh_token_life_and_the_warning_days(cli: Cli):
    shown = cli.json("settings", "show")
    assert (shown["oauth_refresh_days"], shown["oauth_expiry_warning_days"]) == (90, 7)

    changed = cli.json("settings", "set", "--oauth-refresh-days", "30", "--oauth-warning-days", "10")

    assert (changed["oauth_refresh_days"], changed["oauth_expiry_warning_days"]) == (30, 10)
    stored = cli.query("SELECT oauth_refresh_days, oauth_expiry_warning_days FROM org_settings")
    assert [tuple(row) for row in stored] == [(30, 10)]
    assert "0 days is out of range 1–3650" in cli.fails("settings", "set", "--oauth-warning-days", "0")
    assert cli.scalar("SELECT oauth_expiry_warning_days FROM org_settings") == 10
