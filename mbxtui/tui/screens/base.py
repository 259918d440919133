"""What every screen of the console shares: role checks on actions, service calls that turn
refusals into notifications, and the key help."""

from __future__ import annotations

from typing import Any, Callable

from textual import events
from textual.screen import Screen

from mbxtui.core.errors import MbxError
from mbxtui.core.permissions import Permission, allowed, roles_for


class BaseScreen(Screen):
    """``PERMISSIONS`` maps an action name to the permission it needs: the Footer greys out what
    the operator may not do, and pressing its key explains which role is needed."""

    PERMISSIONS: dict[str, Permission] = {}

    @property
    def actor(self):
        return self.app.actor

    def may(self, permission: Permission) -> bool:
        return allowed(self.actor, permission)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        permission = self.PERMISSIONS.get(action)
        if permission is not None and not self.may(permission):
            return None  # shown greyed out in the Footer
        return True

    def on_key(self, event: events.Key) -> None:
        for binding in self._bindings.key_to_bindings.get(event.key, []):
            action = binding.action.split("(")[0]
            permission = self.PERMISSIONS.get(action)
            if permission is not None and not self.may(permission):
                event.stop()
                self.notify(f"{binding.description}: you are {self.actor.role.value}; this needs the role "
                            f"{roles_for(permission)}", severity="warning", title="Not allowed")
                return

    def call_service(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a service; a refusal becomes an error notification and ``None``."""
        try:
            return function(*args, **kwargs)
        except MbxError as exc:
            self.notify(str(exc), severity="error", title="Refused", timeout=8, markup=False)
            return None
