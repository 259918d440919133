"""Who may do what (DOMAIN.md "Operator"). Every service checks here, so no interface can skip it;
the console asks ``allowed`` to grey out what the operator cannot do. On SQLite these checks are
all there is (whoever can write the file can do anything); on PostgreSQL the server enforces the
same grants a second time, against any client (R35, ``server_roles``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mbxtui.core.enums import Role
from mbxtui.core.errors import PermissionDenied

G, S, Y, V = Role.GLOBAL_ADMIN, Role.SERVICE_ADMIN, Role.SYSTEM_ADMIN, Role.VIEWER


class Permission(StrEnum):
    READ = "read"
    MANAGE_OPERATORS = "manage operators"
    ACT_AS = "act as another operator"
    APPROVE = "approve or reject email addresses"
    CONFIGURE = "change users, queues, mailboxes, profiles and settings"
    TEST = "run Test & Enable"
    DISMISS_ALERTS = "dismiss alerts"
    ALLOW_PLAINTEXT = "allow credentials in clear to a host off this machine"
    CONFIRM_SECRET = "confirm a secret for an endpoint it was not set for"
    SEND_EMAIL = "send email from a mailbox"


GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.READ: frozenset({G, S, Y, V}),
    Permission.MANAGE_OPERATORS: frozenset({G}),
    Permission.ACT_AS: frozenset({G}),
    # Segregation of duties: system_admin configures and tests but may not approve.
    Permission.APPROVE: frozenset({G, S}),
    Permission.CONFIGURE: frozenset({G, S, Y}),
    Permission.TEST: frozenset({G, S, Y}),
    Permission.DISMISS_ALERTS: frozenset({G, S, Y}),
    # R34: only a global_admin lets a profile send credentials without TLS beyond loopback.
    Permission.ALLOW_PLAINTEXT: frozenset({G}),
    # R34: whoever may point a profile somewhere (system_admin) may not also decide that the
    # passwords follow it there; that is for the roles that approve addresses.
    Permission.CONFIRM_SECRET: frozenset({G, S}),
    # R29: queuing an email, or sending an uncertain one again, puts mail out in a mailbox's name.
    Permission.SEND_EMAIL: frozenset({G, S, Y}),
}


@dataclass(frozen=True)
class Actor:
    """The operator a service call is made as. ``by_login`` is the global admin who used ``--as``."""

    login: str
    role: Role
    operator_id: int | None = None
    user_id: int | None = None
    by_login: str | None = None

    @property
    def audit_name(self) -> str:
        return f"{self.login} (as by {self.by_login})" if self.by_login else self.login


SYSTEM = Actor(login="mbxtui", role=Role.GLOBAL_ADMIN)


def allowed(actor: Actor, permission: Permission) -> bool:
    return actor.role in GRANTS[permission]


def roles_for(permission: Permission) -> str:
    roles = [role.value for role in Role if role in GRANTS[permission]]
    return " or ".join(roles)


def require(actor: Actor, permission: Permission) -> None:
    if not allowed(actor, permission):
        raise PermissionDenied(
            f"{actor.login} is {actor.role.value} and may not {permission.value}: "
            f"this needs the role {roles_for(permission)}"
        )
