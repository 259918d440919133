"""Operators and roles (R35): on SQLite the operator is the OS account of the effective uid, on
PostgreSQL the database role of the session (``server_roles``); the first to initialise is
global_admin. On PostgreSQL adding an operator, changing their role or removing them moves the
membership of the login role in the group roles the server enforces, in the same transaction."""

from __future__ import annotations

import os
import pwd
from dataclasses import asdict, dataclass
from typing import Any

from mbxtui.core import server_roles, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import Role
from mbxtui.core.errors import Conflict, InvalidInput, NotFound, NotInitialised, PermissionDenied
from mbxtui.core.models import Operator, User
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit


def os_login() -> str:
    """The login of the effective user id: unlike LOGNAME or USER, it cannot be set to another
    operator's name from the environment. A uid with no passwd entry (common in containers) is
    nobody mbxtui can vouch for: refused, never guessed from the environment."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise PermissionDenied(
            f"this process runs as uid {uid}, which has no entry in the system's user database (passwd), "
            "so mbxtui cannot tell who you are: run it as a user with an account; nothing was changed"
        ) from None


def connected_login() -> str:
    """Who this process is, as far as the database can tell: the session's role on PostgreSQL,
    the OS login on SQLite."""
    return server_roles.session_login() if server_roles.enforced() else os_login()


def _valid_login(login: str) -> str:
    login = validation.text("login", login, max_length=64)
    if server_roles.enforced():
        if len(login.encode()) > server_roles.ROLE_NAME_BYTES:
            raise InvalidInput("login", f"a PostgreSQL role name has at most {server_roles.ROLE_NAME_BYTES} bytes")
        if login in server_roles.GROUPS.values():
            raise InvalidInput("login", f"{login} is one of mbxtui's group roles, not an operator")
    return login


def _actor_for(operator: Operator, by_login: str | None = None) -> Actor:
    return Actor(
        login=operator.login,
        role=Role(operator.role),
        operator_id=operator.id,
        user_id=operator.user_id,
        by_login=by_login,
    )


def initialise(login: str | None = None) -> Actor:
    """Make ``login`` (default: the connected login) the first operator, a global_admin."""
    login = _valid_login(login or connected_login())
    with write_transaction():
        if Operator.select().exists():
            existing = Operator.get_or_none(Operator.login == login)
            if existing is not None:
                return _actor_for(existing)
            raise Conflict("the database is already initialised; ask a global_admin to add you as an operator")
        operator = Operator.create(login=login, role=Role.GLOBAL_ADMIN.value)
        if server_roles.enforced():
            server_roles.set_operator_role(login, Role.GLOBAL_ADMIN)
        actor = _actor_for(operator)
        audit.record(actor, "operator.init", "operator", f"initialised the database; {login} is global_admin",
                     [(operator.id, None, {"login": login, "role": operator.role})])
    return actor


def current_actor(as_login: str | None = None, login: str | None = None) -> Actor:
    """The operator for the connected login, or the one named by ``as_login`` when a global_admin
    acts as it (on PostgreSQL the session's role must also be a member of that operator's role)."""
    login = login or connected_login()
    if not Operator.select().exists():
        raise NotInitialised("this database has no operators yet: run `mbxtui init` first")
    operator = Operator.get_or_none((Operator.login == login) & (Operator.active == True))  # noqa: E712
    if operator is None:
        raise PermissionDenied(
            f"{login} is not an operator of this database: ask a global_admin to run "
            f"`mbxtui operator add {login} --role ROLE`"
        )
    actor = _actor_for(operator)
    if as_login is None or as_login == login:
        return actor
    require(actor, Permission.ACT_AS)
    as_login = validation.lookup("as", as_login)
    target = Operator.get_or_none((Operator.login == as_login) & (Operator.active == True))  # noqa: E712
    if target is None:
        raise NotFound(f"--as: no active operator with login {validation.shown(as_login)}")
    if server_roles.enforced() and not server_roles.may_act_as(as_login):
        raise PermissionDenied(
            f"{login} may not act as {as_login} on this database server: the role {login} is not a member of "
            f"the role {as_login}; a database administrator can allow it with: GRANT \"{as_login}\" TO \"{login}\""
        )
    return _actor_for(target, by_login=login)


def _user_by_email(field: str, value: str | None) -> User | None:
    if not value:
        return None
    address = validation.email(field, value)
    user = User.get_or_none(User.email == address)
    if user is None:
        raise InvalidInput(field, f"no user with email {address}")
    return user


def add(actor: Actor, login: str, role: str, user_email: str | None = None) -> OperatorRecord:
    require(actor, Permission.MANAGE_OPERATORS)
    login = _valid_login(login)
    role = validation.choice("role", role, Role)
    user = _user_by_email("user", user_email)
    with write_transaction():
        operator = Operator.get_or_none(Operator.login == login)
        if operator is None:
            operator = Operator.create(login=login, role=role.value, user=user)
        elif operator.active:
            raise Conflict(f"operator {login} already exists")
        else:  # removed earlier: the login is unique, so the same row comes back
            operator.role, operator.user, operator.active = role.value, user, True
            operator.save()
        _grant(login, role)
        audit.record(actor, "operator.add", "operator", f"added operator {login} as {role.value}",
                     [(operator.id, None, {"login": login, "role": role.value})])
    return OperatorRecord.of(operator)


def set_role(actor: Actor, login: str, role: str) -> OperatorRecord:
    require(actor, Permission.MANAGE_OPERATORS)
    role = validation.choice("role", role, Role)
    with write_transaction():
        operator = get(login)
        if operator.role == role:
            return OperatorRecord.of(operator)
        if operator.role == Role.GLOBAL_ADMIN and role != Role.GLOBAL_ADMIN:
            _refuse_removing_last_global_admin(operator)
        before = operator.role
        operator.role = role.value
        operator.save()
        _grant(login, role)
        audit.record(actor, "operator.role", "operator", f"{login}: role {before} -> {role.value}",
                     [(operator.id, {"role": before}, {"role": role.value})])
    return OperatorRecord.of(operator)


def remove(actor: Actor, login: str) -> None:
    require(actor, Permission.MANAGE_OPERATORS)
    with write_transaction():
        operator = get(login)
        if operator.role == Role.GLOBAL_ADMIN:
            _refuse_removing_last_global_admin(operator)
        operator.active = False
        operator.save()
        _grant(login, None)
        audit.record(actor, "operator.remove", "operator", f"removed operator {login}",
                     [(operator.id, {"active": True}, {"active": False})])


def _grant(login: str, role: Role | None) -> None:
    if server_roles.enforced():
        server_roles.set_operator_role(login, role)


def _refuse_removing_last_global_admin(operator: Operator) -> None:
    others = Operator.select().where(
        (Operator.role == Role.GLOBAL_ADMIN.value) & (Operator.active == True) & (Operator.id != operator.id)  # noqa: E712
    )
    if not others.exists():
        raise Conflict(f"{operator.login} is the last global_admin; make another operator global_admin first")


def get(login: str) -> Operator:
    login = validation.lookup("login", login)
    operator = Operator.get_or_none((Operator.login == login) & (Operator.active == True))  # noqa: E712
    if operator is None:
        raise NotFound(f"no operator with login {validation.shown(login)}")
    return operator


@dataclass(frozen=True)
class OperatorRecord:
    """An operator as shown: ``user`` is the email of the user they are, ``created_on`` the
    database's text of the moment (UTC)."""

    login: str
    role: str
    user: str | None
    active: bool
    created_on: str

    @classmethod
    def of(cls, operator: Operator) -> OperatorRecord:
        return cls(
            login=operator.login,
            role=operator.role,
            user=operator.user.email if operator.user_id else None,
            active=operator.active,
            created_on=operator.created_on.isoformat(sep=" "),
        )

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui operator list --json`` prints it (the fields in this order)."""
        return asdict(self)


def list_operators(actor: Actor) -> list[OperatorRecord]:
    require(actor, Permission.READ)
    return [OperatorRecord.of(o) for o in Operator.select().where(Operator.active == True).order_by(Operator.login)]  # noqa: E712
