"""Forms of the console: each field with its error shown beside it, secrets typed masked and never
shown again, and no edit lost without asking. ``ForwardMailboxForm`` creates a forward mailbox (R17);
``OAuthCredentialForm`` sets a profile's OAuth client credential."""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Input, Label, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import OAuthCredential, OAuthProvider
from mbxtui.core.errors import InvalidInput, MbxError, problem_sentence
from mbxtui.core.oauth.client_credentials import MAX_FILE
from mbxtui.core.oauth.settings import CREDENTIALS
from mbxtui.core.permissions import Permission
from mbxtui.core.secrets import SecretStore, SecretsError
from mbxtui.core.services import credentials, mailboxes, profiles
from mbxtui.core.services.mailbox_views import MailboxRecord
from mbxtui.tui import navigation
from mbxtui.tui.messages import FormDataLoaded, ServiceFailed
from mbxtui.tui.screens.base import LOADING, BaseScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.select import Select

T = TypeVar("T")


def options(values) -> list[tuple[Text, str]]:
    """A Select's choices: shown as text (a profile named "[b]x[/]" is never read as markup)."""
    return [(Text(safe(str(value))), str(value)) for value in values]


def chosen(select: Select) -> Any:
    """The value of a Select, ``None`` when nothing is chosen."""
    return None if select.value is Select.NULL else select.value


class PartlySaved(MbxError):
    """A save of several steps (a record, then its secret) failed after the first was written:
    ``record`` is what the service returned for it, so the form can go on from there."""

    def __init__(self, record: Any, saved: str, failure: BaseException) -> None:
        self.record = record
        problem = problem_sentence(failure)
        super().__init__(f"{saved}, but {problem[:1].lower()}{problem[1:]}")


class FormScreen(BaseScreen):
    """A form over one record. Subclasses compose fields with ``field`` and implement ``save``;
    ``FIELD_ALIASES`` maps a service's field name (``InvalidInput.field``) to a widget id where
    they differ. Secrets are masked inputs that start empty: typing one is a change.

    A form that needs data first (the profiles to choose from, the record) sets ``NEEDS_DATA`` and
    implements ``read_data`` (called in a worker); until it arrives ``compose`` shows
    ``loading()``, then the form is composed again with ``self.data`` set. Saving runs in a worker
    too (``run_save``).

    Each field is one line (title, then a compact input, choice or checkbox) so that a whole record
    fits at 80x24; its error appears on the line under it."""

    DEFAULT_CSS = """
    FormScreen #form { padding: 0 1; }
    FormScreen .form-row { height: auto; }
    FormScreen .row-label { width: 32; padding-right: 1; }
    FormScreen .form-row:focus-within .row-label { text-style: bold reverse; }
    FormScreen .form-row Input, FormScreen .form-row Select, FormScreen .form-row Checkbox { width: 1fr; }
    FormScreen .form-row Input { background: $boost; }
    FormScreen .field-error { padding-left: 32; }
    FormScreen .note { margin-bottom: 1; }
    FormScreen #save-problem { color: $text-error; padding: 0 1; height: auto; }
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="save"),
        Binding("escape", "leave", "Back", id="back"),
        *navigation.leave_bindings(),
    ]
    PERMISSIONS = {"save": Permission.CONFIGURE}
    FIELD_ALIASES: dict[str, str] = {}
    NEEDS_DATA = False

    def __init__(self) -> None:
        super().__init__()
        self.initial: dict[str, Any] = {}
        self.data: Any = None
        self.saving = False

    def read_data(self) -> Any:
        """What the form needs before it is shown (called in a worker thread)."""
        return None

    def loading_placeholder(self, title: str) -> ComposeResult:
        yield Static(title, id="title", markup=False)
        yield Static(LOADING, id="loading", markup=False)
        yield Footer()

    # -- composing --

    def field(self, key: str, title: str, widget: Widget) -> Iterator[Widget]:
        widget.id = key
        widget.compact = True
        yield Horizontal(Label(title, classes="row-label", markup=False), widget, classes="form-row")
        yield Static("", id=f"error-{key}", classes="field-error hidden", markup=False)

    def note(self, text: str) -> Static:
        return Static(text, classes="note", markup=False)

    def buttons(self, save_label: str = "Save") -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Button(f"{save_label} (ctrl+s)", variant="primary", id="save", compact=True,
                         disabled=not self.may(self.PERMISSIONS["save"]))
            yield Button("Back (esc)", id="back", compact=True)

    def form(self) -> VerticalScroll:
        return VerticalScroll(id="form")

    def on_mount(self) -> None:
        if self.NEEDS_DATA and self.data is None:
            self.load(self.read_data, FormDataLoaded, group="form")
        else:
            self.form_ready()

    async def on_form_data_loaded(self, message: FormDataLoaded) -> None:
        self.data = message.data
        await self.recompose()
        self.form_ready()
        # Fields composed after the screen was styled miss its ":focus-within" rule (the focused
        # row's title in reverse) until their styles are worked out again.
        self.call_after_refresh(self.app.update_styles, self)

    def form_ready(self) -> None:
        """The fields are there: remember their values (to know what changed) and focus the first."""
        self.initial = self.values()
        inputs = [w for w in self.query("#form Input, #form Select, #form Checkbox") if w.focusable]
        if inputs:
            inputs[0].focus()

    # -- reading --

    def values(self) -> dict[str, Any]:
        """Every field's current value: text for inputs, the choice (or None) for selects, flags."""
        values: dict[str, Any] = {}
        for widget in self.query("#form Input, #form Select, #form Checkbox"):
            values[widget.id] = chosen(widget) if isinstance(widget, Select) else widget.value
        return values

    def changed(self) -> dict[str, Any]:
        current = self.values()
        return {key: value for key, value in current.items() if value != self.initial.get(key)}

    # -- errors beside their fields --

    def clear_errors(self) -> None:
        for error in self.query(".field-error"):
            error.update("")
            error.add_class("hidden")

    def show_error(self, exc: InvalidInput) -> None:
        key = self.FIELD_ALIASES.get(exc.field, exc.field.lstrip("-").replace("-", "_"))  # options: --oauth-tenant
        targets = self.query(f"#error-{key}")
        if targets:
            targets.first().update(exc.problem)
            targets.first().remove_class("hidden")
            widget = self.query(f"#{key}")
            if widget:
                widget.first().focus()
        self.notify(str(exc), severity="error", title="Not saved", markup=False)

    def store_for_secrets(self) -> SecretStore:
        store = self.app.store
        if store is None or store.needs_master_password:
            raise SecretsError("the secrets store is locked: restart the console and enter the master password")
        return store

    def run_save(self, save: Callable[[], T], then: Callable[[T], None]) -> None:
        """Call ``save`` in a worker, then ``then`` with its answer; bad input is shown beside its
        field, other refusals as a notification."""
        if self.saving:
            return  # ctrl+s pressed again while the first save runs
        self.clear_errors()
        self.clear_save_problem()
        self.saving = True

        def saved(result: T) -> None:
            self.saving = False
            then(result)

        self.call(save, saved, group="save", title="Not saved")

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "save":
            self.saving = False
            message.stop()
            if isinstance(message.error, InvalidInput):
                self.show_error(message.error)
            elif isinstance(message.error, PartlySaved):
                self.partly_saved(message.error.record)
                self.save_failed(message.problem, outcome="Partly saved")
            else:
                self.save_failed(message.problem)

    def partly_saved(self, record: Any) -> None:
        """The record was saved but not its secret (``PartlySaved``): take ``record`` as the form's
        starting point, so that saving again sends only what is left."""

    def save_failed(self, problem: str, *, outcome: str = "Not saved") -> None:
        """A refusal, or the database or keyring failing, shown in one line under the form's title.
        The form stays open with what was typed, except secrets: their fields are emptied, so that a
        password does not stay in the console's memory while nothing uses it, and so that it is typed
        again, in full view of the operator, before it is sent anywhere."""
        cleared = [box for box in self.query("#form Input") if box.password and box.value]
        for box in cleared:
            box.value = ""
        again = f" Type the {self.field_title(cleared[0])} again to save it." if len(cleared) == 1 else (
            " Type the secrets again to save them." if cleared else "")
        end = "" if problem.endswith((".", "!", "?")) else "."
        self.show_save_problem(f"{outcome}: {problem}{end}{again}")

    def field_title(self, widget: Widget) -> str:
        label = widget.parent.query(Label).first() if widget.parent is not None else None
        title = str(label.render()).split(" (")[0] if label is not None else widget.id or "field"
        return title.lower()

    def show_save_problem(self, text: str) -> None:
        existing = self.query("#save-problem")
        if existing:
            existing.first().update(text)
        else:
            self.mount(Static(text, id="save-problem", markup=False), after=self.query_one("#title"))
        self.app.bell()

    def clear_save_problem(self) -> None:
        for line in self.query("#save-problem"):
            line.remove()

    # -- actions --

    def action_save(self) -> None:
        raise NotImplementedError

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "back":
            self.action_leave()

    def confirm_discard(self, then) -> None:
        if not self.changed():
            then()
            return
        self.app.push_screen(ConfirmScreen("Unsaved changes", "Leave this form and lose your changes?",
                                           confirm_label="Discard"), lambda discard: discard and then())

    def action_leave(self) -> None:
        self.confirm_discard(lambda: self.dismiss(False))

    def action_leave_to(self, name: str) -> None:
        if navigation.screens().get(name) is type(self):
            return

        def go() -> None:
            self.dismiss(False)
            self.app.action_go(name)

        self.confirm_discard(go)


class ForwardMailboxForm(FormScreen):
    """New Forward Mailbox: dismisses with True once it is created."""

    TITLE_TEXT = "New forward mailbox"
    FIELD_ALIASES = {"delete-after-processing": "delete_after_processing"}
    NEEDS_DATA = True

    def read_data(self) -> list[str]:
        return [p.name for p in profiles.list_profiles(self.actor) if p.active]

    def compose(self) -> ComposeResult:
        if self.data is None:
            yield from self.loading_placeholder(f"mbxtui · {self.TITLE_TEXT}")
            return
        names = self.data
        yield Static(f"mbxtui · {self.TITLE_TEXT}", id="title", markup=False)
        with self.form():
            yield self.note("A mailbox with no user or queue that receives email for others; it sends nothing.")
            yield from self.field("name", "Name", Input(placeholder="Support inbox"))
            yield from self.field("email", "Email address", Input(placeholder="forward@example.com"))
            yield from self.field("profile", "Email server profile",
                                  Select(options(names), prompt="(choose a profile)"))
            yield from self.field("delete_after_processing", "Delete emails after processing", Checkbox())
            yield from self.field("owner", "Owner", Input(placeholder="a user's email address (optional)"))
            yield from self.buttons("Create")
        yield Footer()

    def action_save(self) -> None:
        values = self.values()

        def create():
            if values["profile"] is None:
                raise InvalidInput("profile", "is required: choose an active profile")
            return mailboxes.create_forward_mailbox(
                self.actor, name=values["name"], email=values["email"], profile=values["profile"],
                delete_after_processing=values["delete_after_processing"], owner=values["owner"].strip() or None)

        def created(mailbox: MailboxRecord) -> None:
            self.notify(f"Created forward mailbox {mailbox.email}; approve and test it to enable it",
                        title="Forward mailbox", markup=False)
            self.dismiss(True)

        self.run_save(create, created)


CREDENTIAL_FILE_OPTIONS = {OAuthCredential.CERTIFICATE: "--certificate-file",
                           OAuthCredential.SERVICE_ACCOUNT: "--service-account-file"}


def read_credential_file(kind: str, path: str) -> bytes:
    """A certificate's PEM file or a service account's key file, read once (in a worker thread)."""
    what = "the PEM file of the app's private key and certificate" if kind == OAuthCredential.CERTIFICATE else (
        "the service account's JSON key file")
    if not path.strip():
        raise InvalidInput("credential_file", f"is empty: give the path of {what}")
    try:
        with open(path.strip(), "rb") as file:
            return file.read(MAX_FILE + 1)
    except OSError as exc:
        raise InvalidInput("credential_file", f"cannot read {safe(path.strip())}: {exc.strerror}") from None


class OAuthCredentialForm(FormScreen):
    """The client credential of a profile's OAuth provider, as ``profile set-oauth`` sets it: a client
    secret typed masked, or the path of a file read once; kept in the keyring only, bound to the
    profile's endpoint and OAuth settings as they are now (R34). Dismisses with True once set."""

    FIELD_ALIASES = {"--client-secret-stdin": "client_secret", "client secret": "client_secret",
                     **{option: "credential_file" for option in CREDENTIAL_FILE_OPTIONS.values()}}

    def __init__(self, profile: str, provider: str) -> None:
        super().__init__()
        self.profile_name = profile
        self.kinds = CREDENTIALS[OAuthProvider(provider)]
        self.TITLE_TEXT = f"OAuth client credential of profile {profile}"

    def compose(self) -> ComposeResult:
        yield Static(f"mbxtui · {safe(self.TITLE_TEXT)}  (ctrl+s set, esc back)", id="title", markup=False)
        with self.form():
            yield self.note("Kept in the keyring only, never shown again; a file is read once and may be deleted "
                            "afterwards.")
            yield from self.field("kind", "Credential", Select(options(self.kinds), value=self.kinds[0],
                                                               allow_blank=False))
            yield from self.field("client_secret", "Client secret", Input(password=True))
            yield from self.field("credential_file", "File to read", Input(placeholder="path of the file"))
            yield from self.buttons("Set")
        yield Footer()

    def form_ready(self) -> None:
        self.show_kind_fields()
        super().form_ready()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind":
            self.show_kind_fields()

    def show_kind_fields(self) -> None:
        secret = chosen(self.query_one("#kind", Select)) == OAuthCredential.CLIENT_SECRET
        for key, shown in (("client_secret", secret), ("credential_file", not secret)):
            self.query_one(f"#{key}").parent.display = shown

    def action_save(self) -> None:
        values = self.values()
        kind, name = values["kind"], self.profile_name

        def save() -> str:
            store = self.store_for_secrets()
            value = (values["client_secret"] if kind == OAuthCredential.CLIENT_SECRET
                     else read_credential_file(kind, values["credential_file"]))
            credentials.set_profile_oauth(self.actor, name, kind, value, store)
            return kind

        def saved(kind: str) -> None:
            self.notify(f"OAuth {kind.replace('_', ' ')} of profile {name} set", markup=False)
            self.dismiss(True)

        self.run_save(save, saved)
