"""What every screen of the console shares: role checks on actions, the app-wide events it hears,
service calls in workers, and the key help."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from textual import events
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker

from mbxtui.core.permissions import Actor, Permission, allowed, roles_for
from mbxtui.tui.closing import ClosesOnce
from mbxtui.tui.messages import Done, ServiceFailed
from mbxtui.tui.workers import run_service, run_then

if TYPE_CHECKING:
    from mbxtui.core.jobs.runner import MailboxTested

T = TypeVar("T")
LOADING = "loading…"


class BaseScreen(ClosesOnce, Screen):
    """``PERMISSIONS`` maps an action name to the permission it needs: the Footer greys out what
    the operator may not do, and pressing its key explains which role is needed.

    A screen hears the app's events by overriding ``data_changed`` (changes made elsewhere),
    ``mailboxes_tested`` (Test & Enable results) and ``progress_changed`` (the status line's text)."""

    PERMISSIONS: dict[str, Permission] = {}
    _actor: Actor | None = None

    @property
    def actor(self) -> Actor:
        """The operator; kept once read, for the workers that still run after the screen is gone."""
        if self._actor is None:
            self._actor = self.app.actor
        return self._actor

    def may(self, permission: Permission) -> bool:
        return allowed(self.actor, permission)

    def on_mount(self) -> None:
        self.app.changed_elsewhere.subscribe(self, lambda _: self.data_changed())
        self.app.mailboxes_tested.subscribe(self, self.mailboxes_tested)
        self.app.progress_changed.subscribe(self, self.progress_changed)

    def data_changed(self) -> None:
        """Mailboxes changed elsewhere."""

    def mailboxes_tested(self, events: list[MailboxTested]) -> None:
        """Test & Enable wrote these results."""

    def progress_changed(self, text: str) -> None:
        """The app's Test & Enable progress line changed."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        permission = self.PERMISSIONS.get(action)
        if permission is not None and not self.may(permission):
            return None  # shown greyed out in the Footer
        return True

    def on_key(self, event: events.Key) -> None:
        active = self.active_bindings.get(event.key)  # the keys in force: after the keymap
        if active is None or active.node is not self:
            return
        binding = active.binding
        permission = self.PERMISSIONS.get(binding.action.split("(")[0])
        if permission is not None and not self.may(permission):
            event.stop()
            self.notify(f"{binding.description}: you are {self.actor.role.value}; this needs the role "
                        f"{roles_for(permission)}", severity="warning", title="Not allowed", markup=False)

    # -- service calls, always in a worker (tui/workers.py) --

    def load(self, call: Callable[[], T], answer: Callable[[T], Message], *, group: str = "load",
             title: str = "Not loaded") -> Worker[None]:
        """Read in a worker; a newer load of the group replaces an older one still running."""
        return run_service(self, call, answer, group=group, title=title)

    def call(self, call: Callable[[], T], then: Callable[[T], None], *, group: str = "change",
             title: str = "Refused") -> Worker[None]:
        """Make a change in a worker; ``then(result)`` runs here once it is done."""
        return run_then(self, call, then, group=group, title=title)

    def on_done(self, message: Done) -> None:
        message.stop()
        message.then(message.result)

    def on_service_failed(self, message: ServiceFailed) -> None:
        self.service_failed(message)  # then on to the app, which shows it unless stopped here

    def service_failed(self, message: ServiceFailed) -> None:
        """A worker's service call of this screen was refused or failed."""
