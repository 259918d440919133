"""Schema step 15 on both backends: a database made before it gains the mailboxes' own OAuth2
authorizations (``MailboxAuthorization``) and the organisation's refresh token lifetime and
warning days, its rows kept."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from peewee import IntegrityError

from mbxtui.core import db
from mbxtui.core.migrations import LATEST_VERSION
from mbxtui.core.models import Mailbox, MailboxAuthorization, OrgSettings, database
from tests.backends import Databases, query


STEP_14_ROWS = (
    "INSERT INTO \"user\" (id, name, email, active, created_on) VALUES (1, 'Ann', 'ann@corp.test', 1, "
    "'2026-01-01 00:00:00')",
    "INSERT INTO mailbox (id, name, email, regarding, user_id, owner_id, is_forward, incoming_method, "
    "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
    "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
    "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, "
    "created_on, modified_on, row_version) VALUES (1, 'Ann', 'ann@corp.test', 'user', 1, 1, 0, "
    "'server_side_sync', 'server_side_sync', 'none', 0, '', 0, 0, 0, 'pending', 'not_run', 'not_run', 'not_run', "
    "'not_run', 0, 0, 0, 0, 1, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)",
)


def test_a_database_at_step_14_gets_the_authorizations_of_step_15_with_its_data(
        databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = databases.new(tmp_path / "v14")
    with monkeypatch.context() as at_step:
        for name in ("MIGRATIONS", "POSTGRES_MIGRATIONS"):
            at_step.setattr(db, name, getattr(db, name)[:14])
        at_step.setattr(db, "LATEST_VERSION", 14)
        db.open_database(url)
        for statement in STEP_14_ROWS:  # as that version wrote them (open_database wrote org_settings)
            database.execute_sql(statement)
        assert "oauth_refresh_days" not in [column.name for column in database.get_columns("org_settings")]
        database.close()

    db.open_database(url)
    try:
        assert LATEST_VERSION >= 15
        settings = OrgSettings.get_by_id(1)
        assert (settings.oauth_refresh_days, settings.oauth_expiry_warning_days) == (90, 7)
        ann = Mailbox.get(Mailbox.email == "ann@corp.test")
        MailboxAuthorization.create(mailbox=ann.id, authorized_on=datetime(2026, 1, 1), authorized_by="alice",
                                    refresh_expires_on=datetime(2026, 4, 1))
        with pytest.raises(IntegrityError):  # one authorization per mailbox
            MailboxAuthorization.create(mailbox=ann.id, authorized_on=datetime(2026, 1, 2), authorized_by="alice")
        database.close()
        assert [tuple(row) for row in query(url, "SELECT authorized_by, last_refresh_error FROM "
                                                 "mailbox_authorization")] == [("alice", None)]
    finally:
        if not database.is_closed():
            database.close()
        databases.drop(url)
