"""R35 on PostgreSQL: the operator is the database role of the session, and the server enforces
each role's rights (the grants and triggers of schema step 7). On SQLite every function here
answers for a file that enforces nothing: the OS account is the operator and the services' checks
are all there is.

An operator's login is a login role of the same name, a member of one group role per mbxtui role
(``GROUPS``). ``--as OTHER`` is ``SET ROLE OTHER`` on every connection of the process, which the
server allows only to members of OTHER's role, so the server enforces OTHER's rights and stamps
OTHER (and the session's role as ``by_login``) on each audit entry."""

from __future__ import annotations

import peewee

from mbxtui.core import dialect
from mbxtui.core.enums import Role
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor

GROUPS: dict[Role, str] = {role: f"mbxtui_{role.value}" for role in Role}
ROLE_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are cut short silently


def enforced() -> bool:
    """Whether the database server enforces the roles (PostgreSQL) or nothing does (SQLite)."""
    return dialect.current().name == "postgresql"


def session_login() -> str:
    """The role the session logged in as: who the server vouches for."""
    return database.execute_sql("SELECT CAST(session_user AS text)").fetchone()[0]


def role_exists(login: str) -> bool:
    return database.execute_sql("SELECT 1 FROM pg_roles WHERE rolname = ?", [login]).fetchone() is not None


def may_act_as(login: str) -> bool:
    """Whether the session's role may SET ROLE to ``login`` (is a member of it)."""
    return role_exists(login) and bool(database.execute_sql(
        "SELECT pg_has_role(session_user, ?, 'MEMBER')", [login]).fetchone()[0])


def act_as(login: str) -> None:
    """Every connection of this process, the open one and those opened from now on, acts as the
    role ``login`` (the server refuses it unless the session's role is a member of it)."""
    database.obj.assumed_role = login
    database.obj.assume_role(database.connection())


def set_operator_role(login: str, role: Role | None) -> None:
    """Make the login role ``login`` (created when missing) a member of the group of ``role`` and of
    no other mbxtui group; of none when ``role`` is None. Runs inside the caller's transaction."""
    database.execute_sql("SELECT mbxtui_set_operator_role(?, ?)", [login, role.value if role else None])


def assume(actor: Actor) -> None:
    """Make every connection of this process act as ``actor`` when it is an operator acted as
    (``--as``), so that the server enforces that operator's rights; nothing on SQLite."""
    if actor.by_login is not None and enforced():
        act_as(actor.login)


def grant_every_operator(db: peewee.Database) -> int:
    """On a PostgreSQL ``db``, give each active operator's login role the group of its role and
    take every group from removed operators (after ``mbxtui migrate``, or changes made by hand);
    the number of active operators. Nothing on SQLite. The server lets only global_admins (and the
    owner) do it."""
    if dialect.of(db).name != "postgresql":
        return 0
    db.execute_sql('SELECT mbxtui_set_operator_role("login", CASE WHEN "active" = 1 THEN "role" END) FROM "operator"')
    return db.execute_sql('SELECT count(*) FROM "operator" WHERE "active" = 1').fetchone()[0]
