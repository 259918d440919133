"""Operators and roles: the OS login is the identity, the first one is global_admin, roles are
enforced by the services, only a global_admin may act as another operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbxtui.core import db
from mbxtui.core.enums import Role
from mbxtui.core.errors import Conflict, InvalidInput, NotFound, NotInitialised, PermissionDenied
from mbxtui.core.models import AuditEntry
from mbxtui.core.services import operators, users
from tests.core.conftest import Actors
from tests.core.support import count, snapshot


@pytest.fixture
def empty_db(tmp_path: Path):
    opened = db.open_database(tmp_path / "empty.db")
    yield
    opened.close()


def test_the_first_operator_to_initialise_is_global_admin(empty_db):
    actor = operators.initialise(login="alice")
    assert (actor.login, actor.role) == ("alice", Role.GLOBAL_ADMIN)
    assert operators.current_actor(login="alice").role == Role.GLOBAL_ADMIN
    entry = AuditEntry.get()
    assert (entry.action, entry.login) == ("operator.init", "alice")


def test_initialise_defaults_to_the_os_login(empty_db):
    assert operators.initialise().login == operators.os_login()


def test_a_second_login_cannot_initialise_an_initialised_database(actors: Actors):
    before = snapshot()
    with pytest.raises(Conflict, match="already initialised; ask a global_admin"):
        operators.initialise(login="mallory")
    assert snapshot() == before
    assert operators.initialise(login="alice").role == Role.GLOBAL_ADMIN  # the same login: no harm


def test_an_uninitialised_database_asks_for_init(empty_db):
    with pytest.raises(NotInitialised, match="mbxtui init"):
        operators.current_actor(login="alice")


def test_a_login_that_is_not_an_operator_is_told_how_to_get_access(actors: Actors):
    with pytest.raises(PermissionDenied) as refused:
        operators.current_actor(login="mallory")
    message = str(refused.value)
    assert "mallory is not an operator" in message
    assert "mbxtui operator add mallory --role ROLE" in message


def test_each_role_is_what_operator_add_gave(actors: Actors):
    assert [a.role for a in (actors.admin, actors.service, actors.system, actors.viewer)] == [
        Role.GLOBAL_ADMIN, Role.SERVICE_ADMIN, Role.SYSTEM_ADMIN, Role.VIEWER]
    listed = {o.login: o.role for o in operators.list_operators(actors.viewer)}
    assert listed == {"alice": "global_admin", "sam": "service_admin", "syd": "system_admin", "vic": "viewer"}


@pytest.mark.parametrize("role", ["service", "system", "viewer"])
def test_only_a_global_admin_manages_operators(actors: Actors, role: str):
    before = snapshot()
    with pytest.raises(PermissionDenied, match="needs the role global_admin"):
        operators.add(getattr(actors, role), "newbie", "viewer")
    with pytest.raises(PermissionDenied, match="needs the role global_admin"):
        operators.set_role(getattr(actors, role), "vic", "global_admin")
    assert snapshot() == before


def test_viewer_can_read_but_not_change(actors: Actors):
    assert users.list_users(actors.viewer) == []
    with pytest.raises(PermissionDenied) as refused:
        users.add_user(actors.viewer, "Ann", "ann@corp.test")
    assert "vic is viewer" in str(refused.value)
    assert "global_admin or service_admin or system_admin" in str(refused.value)
    assert count("user") == 0


def test_a_global_admin_acts_as_another_operator(actors: Actors):
    actor = operators.current_actor(as_login="sam", login="alice")
    assert (actor.login, actor.role, actor.by_login) == ("sam", Role.SERVICE_ADMIN, "alice")
    users.add_user(actor, "Ann", "ann@corp.test")
    entries = list(AuditEntry.select().where(AuditEntry.action == "user.add"))
    assert [(e.login, e.by_login) for e in entries] == [("sam", "alice")]


@pytest.mark.parametrize("login", ["sam", "syd", "vic"])
def test_nobody_else_may_act_as_another_operator(actors: Actors, login: str):
    with pytest.raises(PermissionDenied, match="may not act as another operator: this needs the role global_admin"):
        operators.current_actor(as_login="alice", login=login)


def test_acting_as_someone_who_is_not_an_operator_is_refused(actors: Actors):
    with pytest.raises(NotFound, match="--as: no active operator with login 'nobody'"):
        operators.current_actor(as_login="nobody", login="alice")


def test_the_last_global_admin_cannot_be_demoted_or_removed(actors: Actors):
    before = snapshot()
    with pytest.raises(Conflict, match="alice is the last global_admin"):
        operators.set_role(actors.admin, "alice", "viewer")
    with pytest.raises(Conflict, match="alice is the last global_admin"):
        operators.remove(actors.admin, "alice")
    assert snapshot() == before
    operators.set_role(actors.admin, "sam", "global_admin")
    assert operators.set_role(actors.admin, "alice", "viewer").role == "viewer"
    assert operators.current_actor(login="alice").role == Role.VIEWER


def test_giving_an_operator_the_role_it_has_writes_nothing(actors: Actors):
    before = snapshot()
    assert operators.set_role(actors.admin, "vic", "VIEWER").role == "viewer"
    assert operators.set_role(actors.admin, "alice", "global_admin").role == "global_admin"
    assert snapshot() == before


def test_a_bad_role_is_refused_naming_the_field(actors: Actors):
    before = snapshot()
    with pytest.raises(InvalidInput) as refused:
        operators.add(actors.admin, "newbie", "superuser")
    assert refused.value.field == "role"
    assert "global_admin, service_admin, system_admin, viewer" in str(refused.value)
    assert snapshot() == before


def test_an_operator_login_is_unique(actors: Actors):
    with pytest.raises(Conflict, match="operator sam already exists"):
        operators.add(actors.admin, "sam", "viewer")


def test_an_operator_linked_to_an_unknown_user_is_refused(actors: Actors):
    with pytest.raises(InvalidInput, match="user: no user with email ghost@corp.test"):
        operators.add(actors.admin, "newbie", "viewer", "ghost@corp.test")


def test_a_removed_operator_loses_access_and_can_be_added_again(actors: Actors):
    operators.remove(actors.admin, "syd")
    with pytest.raises(PermissionDenied, match="syd is not an operator"):
        operators.current_actor(login="syd")
    assert "syd" not in {o.login for o in operators.list_operators(actors.admin)}
    operators.add(actors.admin, "syd", "viewer")
    assert operators.current_actor(login="syd").role == Role.VIEWER
    assert [e.action for e in AuditEntry.select().order_by(AuditEntry.id.desc()).limit(2)] == [
        "operator.add", "operator.remove"]
