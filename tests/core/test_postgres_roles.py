"""R35 on PostgreSQL: each operator connects as their own database role and the server enforces
what that role may do, whatever the client sends (raw SQL included): viewers only read, only
approvers change a mailbox's approval, only global_admin manages operators, audit rows are stamped
by the server and never changed.

The tests connect as non-superuser roles (trust authentication on loopback, tests/lab/postgres.py).
Roles belong to the whole cluster, shared by every test database: each test's logins carry the
name of its database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from mbxtui.core import db, server_roles
from mbxtui.core.enums import Role
from mbxtui.core.errors import PermissionDenied
from mbxtui.core.jobs.retests import schedule_retests
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.permissions import Actor
from mbxtui.core.models import Profile, utcnow
from mbxtui.core.services import audit, bulk, enablement, imports, operators, profiles, users
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES, Databases, query
from tests.core.support import IMAP_PROFILE
from tests.lab.postgres import TEST_LOGIN

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: SQLite enforces no roles (R35)")


@dataclass(frozen=True)
class Org:
    url: str
    admin: str
    service: str
    system: str
    viewer: str

    def url_as(self, login: str) -> str:
        return self.url.replace(f"//{TEST_LOGIN}@", f"//{login}@", 1)

    @contextlib.contextmanager
    def connect_as(self, login: str) -> Iterator[Any]:
        connection = psycopg2.connect(self.url_as(login))
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()


def memberships(org: Org, login: str) -> list[str]:
    """The roles ``login`` is a direct member of."""
    return sorted(row[0] for row in query(
        org.url, "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = ?", (login,)))


@pytest.fixture
def org(databases: Databases, tmp_path: Path) -> Iterator[Org]:
    url = str(databases.new(tmp_path, "roles"))
    suffix = url.rsplit("/", 1)[-1]
    org = Org(url, f"alice_{suffix}", f"sam_{suffix}", f"syd_{suffix}", f"vic_{suffix}")
    opened = db.open_database(url)
    try:
        admin = operators.initialise(login=org.admin)
        operators.add(admin, org.service, "service_admin")
        operators.add(admin, org.system, "system_admin")
        operators.add(admin, org.viewer, "viewer")
        users.add_user(admin, "Ann", "ann@corp.test")
    finally:
        opened.close()
    yield org
    databases.drop(url)
    for login in (org.admin, org.service, org.system, org.viewer):
        databases.server.admin(f'DROP ROLE IF EXISTS "{login}"')


def refused(connection, sql: str, params: tuple = ()) -> str:
    """The server's message refusing ``sql`` (SQLSTATE 42501, insufficient_privilege)."""
    with pytest.raises(psycopg2.errors.InsufficientPrivilege) as error:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    return error.value.diag.message_primary


def test_operator_add_creates_the_login_role_and_set_role_and_remove_move_its_membership(org: Org):
    assert memberships(org, org.admin) == ["mbxtui_global_admin"]
    assert memberships(org, org.viewer) == ["mbxtui_viewer"]
    opened = db.open_database(org.url)
    try:
        admin = operators.current_actor(login=org.admin)
        operators.set_role(admin, org.viewer, "service_admin")
        assert memberships(org, org.viewer) == ["mbxtui_service_admin"]
        operators.remove(admin, org.viewer)
        assert memberships(org, org.viewer) == []
        operators.add(admin, org.viewer, "viewer")
    finally:
        opened.close()
    assert memberships(org, org.viewer) == ["mbxtui_viewer"]
    assert query(org.url, "SELECT rolcanlogin FROM pg_roles WHERE rolname = ?", (org.viewer,))[0][0] is True


def test_a_viewer_reads_but_the_server_refuses_every_change_even_through_raw_sql(org: Org):
    with org.connect_as(org.viewer) as viewer:
        with viewer.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM mailbox")
            assert cursor.fetchone()[0] == 1
        assert refused(viewer, "UPDATE mailbox SET name = 'x'") == "permission denied for table mailbox"
        assert refused(viewer, "DELETE FROM alert") == "permission denied for table alert"
        assert refused(viewer, "UPDATE org_settings SET retry_attempts = 1") == "permission denied for table org_settings"
    assert query(org.url, "SELECT name FROM mailbox")[0][0] == "Ann"


def test_a_system_admin_changes_mailboxes_but_the_server_refuses_it_the_approval_columns(org: Org):
    with org.connect_as(org.system) as system:
        with system.cursor() as cursor:
            cursor.execute("UPDATE mailbox SET name = 'Ann Smith'")
        assert refused(system, "DELETE FROM mailbox") == "permission denied for table mailbox"
        for assignment in ("approval = 'approved', approved_by = %s, approved_on = now()",
                           "approval = 'rejected'", "approved_by = %s"):
            assert refused(system, f"UPDATE mailbox SET {assignment}", (org.system,) * assignment.count("%s")) == (
                f"the role {org.system} may not approve or reject email addresses: this needs the role "
                "global_admin or service_admin")
        assert "may not approve" in refused(
            system, "INSERT INTO mailbox SELECT * FROM mailbox WHERE false UNION ALL "
            "SELECT id + 100, name, 'x@corp.test', regarding, NULL, queue_id, owner_id, profile_id, is_forward, "
            "incoming_method, outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
            "delete_after_processing, process_email_after, 'approved', 'syd', now(), incoming_status, outgoing_status, "
            "act_status, overall_status, incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, "
            "test_last_attempted_by, test_last_attempted_on, test_completed_on, last_error_code, last_error_text, "
            "transient_failures, postponed_until, active, created_on, modified_on, row_version, password_bound_to, "
            "token_bound_to, tracking FROM mailbox")
    with org.connect_as(org.service) as service:
        with service.cursor() as cursor:
            cursor.execute("UPDATE mailbox SET approval = 'approved', approved_by = %s, approved_on = now()",
                           (org.service,))
    assert [tuple(row) for row in query(org.url, "SELECT name, approval, approved_by FROM mailbox")] == [
        ("Ann Smith", "approved", org.service)]


def test_the_server_stamps_the_audit_login_and_nobody_but_the_owner_changes_an_audit_row(org: Org):
    with org.connect_as(org.system) as system:
        with system.cursor() as cursor:
            cursor.execute("INSERT INTO audit_entry (at, login, by_login, action, record_kind, record_count, summary) "
                           "VALUES ('2000-01-01', %s, 'bob', 'forged', 'mailbox', 0, 'in another name') "
                           "RETURNING id, login, by_login, at", (org.admin,))
            forged_id, login, by_login, at = cursor.fetchone()
        assert (login, by_login) == (org.system, None) and at.year > 2000
        admin_entry = query(org.url, "SELECT id FROM audit_entry WHERE login = ?", (org.admin,))[0][0]
        assert refused(system, "UPDATE audit_entry SET login = %s", (org.admin,)) == (
            "permission denied for table audit_entry")
        assert refused(system, "DELETE FROM audit_entry") == "permission denied for table audit_entry"
        assert refused(system, "DELETE FROM audit_record") == "permission denied for table audit_record"
        assert refused(system, "INSERT INTO audit_record (entry_id, record_kind, record_id, before, after) "
                       "VALUES (%s, 'mailbox', 1, NULL, '{}')", (admin_entry,)) == (
            f"the role {org.system} may add audit records only to its own audit entries")
    assert query(org.url, "SELECT count(*) FROM audit_entry WHERE id = ? AND login = ?", (forged_id, org.system))[0][0] == 1


def test_only_a_global_admin_manages_operators_at_the_server(org: Org):
    with org.connect_as(org.service) as service:
        assert refused(service, "INSERT INTO operator (login, role, active, created_on) "
                       "VALUES ('mallory', 'global_admin', 1, now())") == "permission denied for table operator"
        assert refused(service, "UPDATE operator SET role = 'global_admin'") == "permission denied for table operator"
        assert refused(service, "SELECT mbxtui_set_operator_role(%s, 'global_admin')", (org.service,)) == (
            "permission denied for function mbxtui_set_operator_role")
    assert memberships(org, org.service) == ["mbxtui_service_admin"]


def test_mbxtui_connected_as_an_operator_role_acts_as_that_operator_whatever_the_client_claims(org: Org):
    opened = db.open_database(org.url_as(org.system))
    try:
        me = operators.current_actor()
        assert (me.login, me.role) == (org.system, Role.SYSTEM_ADMIN)
        forged = Actor(login=org.admin, role=Role.GLOBAL_ADMIN)  # what a modified client could claim
        with pytest.raises(PermissionDenied) as error:
            bulk.approve(forged, Selection.of_emails(["ann@corp.test"]))
        assert str(error.value) == (
            f"the database server refused this (the role {org.system} may not approve or reject email addresses: "
            "this needs the role global_admin or service_admin); nothing was changed: your database role may not "
            "do it, ask a global_admin for a role that may")
        with pytest.raises(PermissionDenied, match=r"refused this \(permission denied for table operator\)"):
            operators.add(forged, "mallory", "global_admin")
        bulk.deactivate(forged, Selection.of_emails(["ann@corp.test"]))
    finally:
        opened.close()
    entry = query(org.url, "SELECT login, by_login, action FROM audit_entry ORDER BY id DESC LIMIT 1")[0]
    assert tuple(entry) == (org.system, None, "mailbox.deactivate")
    assert query(org.url, "SELECT count(*) FROM operator WHERE login = 'mallory'")[0][0] == 0
    assert query(org.url, "SELECT approval FROM mailbox")[0][0] == "pending"


def test_acting_as_another_operator_needs_membership_of_its_role(org: Org, databases: Databases):
    opened = db.open_database(org.url_as(org.admin))
    try:
        with pytest.raises(PermissionDenied) as error:
            operators.current_actor(as_login=org.viewer)
        assert str(error.value) == (
            f"{org.admin} may not act as {org.viewer} on this database server: the role {org.admin} is not a "
            f"member of the role {org.viewer}; a database administrator can allow it with: "
            f'GRANT "{org.viewer}" TO "{org.admin}"')
        databases.server.admin(f'GRANT "{org.viewer}" TO "{org.admin}"')
        as_viewer = operators.current_actor(as_login=org.viewer)
        server_roles.assume(as_viewer)
        forged = Actor(login=org.admin, role=Role.GLOBAL_ADMIN)
        with pytest.raises(PermissionDenied, match=r"refused this \(permission denied for table audit_entry\)"):
            bulk.deactivate(forged, Selection.of_emails(["ann@corp.test"]))
        assert audit.list_entries(as_viewer, limit=1)[0]["action"] == "mailbox.create"  # reading is allowed
    finally:
        opened.close()


def test_a_worker_running_as_a_system_admin_writes_its_results(org: Org):
    """What `mbxtui worker` and the console's runner write: jobs, statuses, alerts and leases."""
    opened = db.open_database(org.url_as(org.system))
    try:
        enablement.schedule(operators.current_actor(), Selection.of_emails(["ann@corp.test"]))
        summary = EnablementRunner(None, threads=2).run(until_idle=True)
    finally:
        opened.close()
    assert (summary.tested, summary.failed) == (1, 1)  # no profile yet: refused before any connection
    assert tuple(query(org.url, "SELECT test_scheduled, last_error_code FROM mailbox")[0]) == (0, "NO_PROFILE")
    assert [row[0] for row in query(org.url, "SELECT state FROM test_job")] == ["done"]
    assert query(org.url, "SELECT count(*) FROM alert WHERE code = 'NO_PROFILE'")[0][0] == 1


def test_an_operator_role_imports_a_csv_file_under_one_audit_entry_written_whole(org: Org, tmp_path: Path):
    # The entry's count is known before it is written: its role may not update it afterwards.
    people = tmp_path / "people.csv"
    people.write_text("name,email\nBob,bob@corp.test\nCat,cat@corp.test\n", encoding="utf-8")
    opened = db.open_database(org.url_as(org.system))
    try:
        assert imports.import_csv(operators.current_actor(), "users", people) == {"imported": 2, "kind": "users"}
    finally:
        opened.close()
    entry = query(org.url, "SELECT login, action, record_count, summary FROM audit_entry ORDER BY id DESC LIMIT 1")[0]
    assert tuple(entry) == (org.system, "user.import", 2, "imported 2 users with their mailboxes")
    assert query(org.url, "SELECT count(*) FROM mailbox WHERE email IN ('bob@corp.test', 'cat@corp.test')")[0][0] == 2


def test_a_worker_running_as_a_system_admin_queues_the_re_tests_due(org: Org):
    """R33: the re-tests a processing worker queues, under the session's role."""
    opened = db.open_database(org.url)
    try:
        admin = operators.current_actor(login=org.admin)
        profiles.create(admin, **IMAP_PROFILE)
        bulk.approve(admin, Selection.of_emails(["ann@corp.test"]))
    finally:
        opened.close()
    with org.connect_as(TEST_LOGIN) as owner, owner.cursor() as cursor:
        cursor.execute("UPDATE profile SET retest_hours = 1")
        cursor.execute("UPDATE mailbox SET profile_id = (SELECT id FROM profile), incoming_enabled = 1, "
                       "test_completed_on = now() - interval '2 hours'")
    opened = db.open_database(org.url_as(org.system))
    try:
        queued = schedule_retests(org.system, utcnow())
    finally:
        opened.close()
    assert queued == 1
    assert [tuple(row) for row in query(org.url, "SELECT state, requested_by FROM test_job")] == [("queued", org.system)]


def test_tables_of_a_session_s_own_cannot_stand_in_for_mbxtui_s_inside_its_triggers(org: Org):
    """Temporary tables come first in a session's search path: the triggers must not read them."""
    opened = db.open_database(org.url)
    try:
        imap = profiles.create(operators.current_actor(login=org.admin), **IMAP_PROFILE)
        imap_id = Profile.get(Profile.name == imap.name).id
    finally:
        opened.close()
    with org.connect_as(org.system) as system:
        with system.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE audit_entry (id bigint)")  # owned by syd: "the owner" trusted?
            cursor.execute("CREATE TEMP TABLE profile (id bigint, type text)")
            cursor.execute("INSERT INTO profile VALUES (%s, 'exchange_online')", (imap_id,))
            cursor.execute("INSERT INTO public.audit_entry (at, login, by_login, action, record_kind, record_count, "
                           "summary) VALUES (now(), %s, NULL, 'forged', 'mailbox', 0, '') RETURNING login",
                           (org.admin,))
            assert cursor.fetchone()[0] == org.system
        assert "may not approve" in refused(
            system, "UPDATE public.mailbox SET approval = 'approved', approved_by = 'exchange_online', "
            "approved_on = now(), profile_id = %s", (imap_id,))
