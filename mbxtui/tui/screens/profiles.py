"""Email server profiles: the list, one profile's detail (settings, its mailboxes and their
statuses, its alerts, Test & Enable of all its mailboxes, Test connection), and the create and edit
form."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Checkbox, ContentSwitcher, DataTable, Footer, Input, Static

from mbxtui.core.display import cell, safe, check_step_lines
from mbxtui.core.enums import IncomingAuth, OAuthProvider, OutgoingAuth, ProfileType, TlsMode
from mbxtui.core.errors import MbxError
from mbxtui.core.oauth.settings import DEFAULT_SCOPES
from mbxtui.core.permissions import Permission
from mbxtui.core.profile_check import ProfileCheck, check_profile
from mbxtui.core.secrets import SecretsError
from mbxtui.core.services import alerts, credentials, enablement, profiles
from mbxtui.core.services.enablement import Scheduled
from mbxtui.core.services.selection import Selection
from mbxtui.core.services.profile_mailboxes import ProfileMailboxes, mailboxes_of_profile
from mbxtui.core.services.profiles import ProfileRecord, ProfileServer, set_or_not
from mbxtui.tui.messages import ProfileDetailLoaded, ProfileMailboxesLoaded, ServiceFailed
from mbxtui.tui.screens.base import LOADING, BaseScreen
from mbxtui.tui.screens.detect_step import DetectStep, DetectsSettings
from mbxtui.tui.screens.forms import FormScreen, OAuthCredentialForm, chosen, options
from mbxtui.tui.screens.listing import ListScreen, texts
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.select import Select


def endpoint_text(side: ProfileServer) -> str:
    return f"{safe(side.host)}:{side.port} {side.tls}, {side.auth} credentials"


def oauth_lines(profile: ProfileRecord) -> list[tuple[str, str]]:
    """Where the profile's tokens come from, when mbxtui fetches them (never the credential itself)."""
    if not profile.oauth:
        return []
    oauth = profile.oauth
    named = [f"{label} {safe(oauth[key])}" for key, label in (("tenant", "tenant"), ("client_id", "client"),
                                                               ("issuer", "at")) if oauth.get(key)]
    return [("OAuth2 provider", ", ".join([oauth["provider"], *named])),
            ("OAuth2 scope", cell(oauth["scope"])),
            ("OAuth client credential", oauth["credential"]),
            *token_lines(oauth.get("token") or {})]


def token_lines(token: dict[str, Any]) -> list[tuple[str, str]]:
    """What the processes that fetch tokens recorded (token_state.py): they keep the tokens."""
    error = (f"{safe(token['error_code'])} at {token['error_on']}: {safe(token['error_text'])}"
             if token.get("error_code") else "none")
    return [("Last OAuth2 token", token.get("obtained_on") or "none yet with these settings"),
            ("OAuth2 token expires", cell(token.get("expires_on"))),
            ("Last OAuth2 token error", error)]


def settings_lines(profile: ProfileRecord) -> list[str]:
    rows = [
        ("Name", safe(profile.name)),
        ("Type", profile.type),
        ("Incoming server", endpoint_text(profile.incoming)),
        ("Outgoing server", endpoint_text(profile.outgoing)),
        ("Profile user name", cell(profile.username)),
        ("Profile password", set_or_not(profile.password_set)),
        ("OAuth2 token", set_or_not(profile.token_set)),
        *oauth_lines(profile),
        ("Secret for this endpoint", profile.secret_endpoint),
        ("Credentials in clear", "allowed by a global_admin" if profile.plaintext_credentials else "not allowed"),
        ("CA bundle", cell(profile.ca_file) if profile.ca_file else "system CAs"),
        ("Max concurrent connections", str(profile.max_connections)),
        ("Connection timeout", f"{profile.timeout_seconds} s"),
        ("Verify delivery", cell(profile.verify_delivery)),
        ("Process email from", cell(profile.process_email_from)),
        ("Minimum polling interval", f"{profile.min_polling_minutes} min"),
        ("Re-test enabled mailboxes", f"after {profile.retest_hours} h" if profile.retest_hours else "never"),
        ("Processed folder (IMAP)", cell(profile.processed_folder) if profile.processed_folder
         else "none (processed mail is deleted)"),
        ("Owner (gets its alerts)", cell(profile.owner)),
        ("Active", cell(profile.active)),
    ]
    width = max(len(title) for title, _ in rows)
    return [f"{title:<{width}}  {value}" for title, value in rows]


class ProfileTestActions(BaseScreen):
    """Test & Enable of every mailbox of a profile, asked once with the count (R8)."""

    def confirm_test_mailboxes(self, name: str, count: int) -> None:
        if not count:
            self.notify(f"Profile {name} has no mailboxes", severity="warning", markup=False)
            return
        noun = "mailbox" if count == 1 else "mailboxes"

        def answered(yes: bool | None) -> None:
            if yes:
                self.schedule_profile_test(name)

        self.app.push_screen(ConfirmScreen(
            "Test & Enable Mailboxes",
            f"Test all {count:,} {noun} of profile {name} in the background and enable each direction that "
            f"passes? At most the profile's max concurrent connections are used at once."), answered)

    def schedule_profile_test(self, name: str) -> None:
        self.call(lambda: enablement.schedule(self.actor, Selection.of_profile(name), f"Test & Enable Mailboxes of {name}"),
                  self.test_scheduled, group="schedule", title="Test & Enable: refused")

    def test_scheduled(self, request: Scheduled) -> None:
        self.app.watch_batch(request.batch_id)
        already = request.selected - request.queued
        extra = f" ({already:,} already queued)" if already else ""
        self.notify(f"{request.queued:,} queued{extra}", title="Test & Enable Mailboxes")


class ProfilesScreen(ListScreen, ProfileTestActions):
    TITLE_TEXT = "Email server profiles"
    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("a", "new", "New profile", id="profiles-new"),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("t", "test_mailboxes", "Test & Enable Mailboxes", id="profiles-test-mailboxes"),
    ]
    PERMISSIONS = {"new": Permission.CONFIGURE, "edit": Permission.CONFIGURE, "test_mailboxes": Permission.TEST}
    COLUMNS = (("Name", 18), ("Type", 15), ("Mailboxes", 9), ("Max conn", 8), ("Active", 6),
               ("Incoming host", 24), ("Outgoing host", 24))
    SHOW_DETAIL = True

    def fetch(self, offset: int, limit: int):
        rows = profiles.list_profiles(self.actor)
        return len(rows), rows[offset:offset + limit]

    def key_of(self, row: ProfileRecord) -> str:
        return row.name

    def cells_of(self, row: ProfileRecord):
        return (row.name, row.type, f"{row.mailboxes or 0:,}", row.max_connections, row.active,
                f"{row.incoming.host}:{row.incoming.port}",
                f"{row.outgoing.host}:{row.outgoing.port}")

    def describe(self, row: ProfileRecord | None) -> str:
        if row is None:
            return "No profiles yet: press a to create one."
        return (f"in  {endpoint_text(row.incoming)}\nout {endpoint_text(row.outgoing)}\n"
                f"password {set_or_not(row.password_set)} · owner {cell(row.owner)}")

    def action_open(self) -> None:
        row = self.current()
        if row is not None:
            self.app.push_screen(ProfileDetailScreen(row.name))

    def action_new(self) -> None:
        self.app.push_screen(ProfileFormScreen(None), lambda saved: saved and self.reload())

    def action_edit(self) -> None:
        row = self.current()
        if row is not None:
            self.app.push_screen(ProfileFormScreen(row), lambda saved: saved and self.reload())

    def action_test_mailboxes(self) -> None:
        row = self.current()
        if row is not None:
            self.confirm_test_mailboxes(row.name, row.mailboxes or 0)


PANES = {"settings": "1 Settings", "mailboxes": "2 Mailboxes", "alerts": "3 Alerts"}


class ProfileDetailScreen(ProfileTestActions):
    TITLE_TEXT = "Email server profile"
    DEFAULT_CSS = """
    ProfileDetailScreen #summary { height: 1; padding: 0 1; }
    ProfileDetailScreen ContentSwitcher { height: 1fr; }
    ProfileDetailScreen #mailboxes { height: 1fr; }
    ProfileDetailScreen VerticalScroll { padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        *[Binding(str(index + 1), f"pane('{pane}')", label.split(" ", 1)[1], show=False, id=f"profile-pane-{pane}")
          for index, (pane, label) in enumerate(PANES.items())],
        Binding("enter", "open", "Open mailbox", show=False, id="open"),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("t", "test_mailboxes", "Test & Enable Mailboxes", id="profiles-test-mailboxes"),
        Binding("c", "test_connection", "Test connection", id="profiles-test-connection"),
        Binding("C", "confirm_secret", "Confirm secret", id="profiles-confirm-secret"),
        Binding("o", "set_oauth", "OAuth credential", id="profiles-set-oauth"),
        Binding("n", "page(1)", "Next page", show=False, id="next-page"),
        Binding("p", "page(-1)", "Previous page", show=False, id="previous-page"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
    ]
    PERMISSIONS = {"edit": Permission.CONFIGURE, "test_mailboxes": Permission.TEST,
                   "test_connection": Permission.TEST, "confirm_secret": credentials.CONFIRM_SECRET,
                   "set_oauth": credentials.SET_SECRET}
    PAGE_SIZE = 200

    def __init__(self, name: str):
        super().__init__()
        self.profile_name = name
        self.profile: ProfileRecord | None = None
        self.page: ProfileMailboxes | None = None
        self.page_start = 0
        self.pane = "settings"
        self.connection_text = ""

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield Static(id="views")
        yield Static("counting mailboxes…", id="summary", markup=False)
        with ContentSwitcher(initial="settings"):
            with VerticalScroll(id="settings"):
                yield Static(LOADING, id="settings-text", markup=False)
                yield Static(id="connection", markup=False)
            table: DataTable = DataTable(id="mailboxes", cursor_type="row", zebra_stripes=True)
            for title, width in (("Email address", 28), ("Status", 8), ("Incoming", 8), ("Outgoing", 8),
                                 ("ACT", 8), ("Approval", 8), ("Active", 6), ("Name", 20)):
                table.add_column(title, width=width)
            yield table
            with VerticalScroll(id="alerts"):
                yield Static(id="alerts-text", markup=False)
        yield Static(id="status", markup=False)
        yield Footer()

    @property
    def table(self) -> DataTable:
        return self.query_one("#mailboxes", DataTable)

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(
            f"mbxtui · Profile {safe(self.profile_name)} · {self.actor.login} ({self.actor.role.value})")
        self.action_reload()
        self.show_pane()

    def progress_changed(self, _text: str) -> None:
        self.update_status()

    def action_reload(self) -> None:
        name, start = self.profile_name, self.page_start

        def read() -> ProfileDetailLoaded:
            return ProfileDetailLoaded(
                profiles.show(self.actor, name), alerts.list_alerts(self.actor, profile=name, limit=50),
                mailboxes_of_profile(self.actor, name, limit=self.PAGE_SIZE, offset=start))

        self.load(read, lambda loaded: loaded, group="detail")

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "detail" and self.app.screen is self:
            self.app.pop_screen()  # the profile is gone (renamed or removed elsewhere)
        elif message.group == "connection":
            self.show_connection_text(f"Test connection: {message.problem}")

    def on_profile_detail_loaded(self, message: ProfileDetailLoaded) -> None:
        self.profile = message.profile
        self.refresh_bindings()
        self.query_one("#title", Static).update(
            f"mbxtui · Profile {safe(self.profile_name)} · {self.actor.login} ({self.actor.role.value})")
        self.query_one("#settings-text", Static).update("\n".join(settings_lines(self.profile)))
        self.query_one("#connection", Static).update(self.connection_text or
                                                     "\nTest connection (c): not run in this session")
        recent = message.alerts
        lines = [f"{a['created_on']}  {a['level']:<11} {safe(a['code']):<22} {safe(a['mailbox'] or '')}\n"
                 f"    {safe(a['text'])}" for a in recent]
        self.query_one("#alerts-text", Static).update(
            "\n".join(lines) if lines else "No alerts about this profile or its mailboxes.")
        self.show_mailboxes(message.mailboxes)

    def load_mailboxes(self) -> None:
        name, start = self.profile_name, self.page_start
        self.load(lambda: mailboxes_of_profile(self.actor, name, limit=self.PAGE_SIZE, offset=start),
                  ProfileMailboxesLoaded, group="profile-mailboxes")

    def on_profile_mailboxes_loaded(self, message: ProfileMailboxesLoaded) -> None:
        self.show_mailboxes(message.page)

    def show_mailboxes(self, page: ProfileMailboxes) -> None:
        self.page = page
        counts = page.counts
        self.query_one("#summary", Static).update(
            f"{page.total:,} mailboxes ({page.active:,} active): {counts['success']:,} passed · "
            f"{counts['failure']:,} failed · {counts['not_run']:,} not tested")
        table = self.table
        keep = table.cursor_row
        table.clear()
        for row in page.rows:
            table.add_row(*texts((row["email"], row["overall_status"], row["incoming_status"],
                                  row["outgoing_status"], row["act_status"], row["approval"], row["active"],
                                  row["name"])), key=str(row["id"]))
        if page.rows:
            table.move_cursor(row=min(keep, len(page.rows) - 1))
        self.update_status()

    def update_status(self) -> None:
        parts = []
        if self.page is not None and self.page.rows:
            first, last = self.page_start + 1, self.page_start + len(self.page.rows)
            parts.append(f"mailboxes {first:,}–{last:,} of {self.page.total:,}")
            if self.page.total > self.PAGE_SIZE:
                parts.append("n/p next/previous page")
        if self.app.progress_text:
            parts.append(self.app.progress_text)
        self.query_one("#status", Static).update(" · ".join(parts))

    def show_pane(self) -> None:
        self.query_one(ContentSwitcher).current = self.pane
        self.query_one("#views", Static).update("  ".join(
            f"[reverse]{label}[/]" if pane == self.pane else label for pane, label in PANES.items()))
        shown = self.query(f"#{self.pane}")
        if shown:  # gone when the screen is closed before it is shown (keys typed faster than it opens)
            shown.first().focus()

    def mailboxes_tested(self, events) -> None:
        shown = {row["id"] for row in self.page.rows} if self.page is not None else set()
        if any(event.mailbox_id in shown for event in events):
            self.load_mailboxes()

    # -- actions --

    def action_back(self) -> None:
        self.leave()

    def action_pane(self, pane: str) -> None:
        self.pane = pane
        self.show_pane()

    def action_page(self, step: int) -> None:
        total = self.page.total if self.page else 0
        target = self.page_start + step * self.PAGE_SIZE
        if target < 0 or target >= total:
            self.notify("No more pages")
            return
        self.page_start = target
        self.action_pane("mailboxes")
        self.load_mailboxes()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        if self.pane != "mailboxes" or not self.table.row_count:
            return
        from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value
        self.app.push_screen(MailboxDetailScreen(int(key)))

    def action_edit(self) -> None:
        def saved(name: str | None) -> None:
            if name:
                self.profile_name = name  # it may have been renamed
                self.action_reload()

        self.app.push_screen(ProfileFormScreen(self.profile), saved)

    def action_test_mailboxes(self) -> None:
        if self.page is not None:
            count = self.page.total
        else:
            count = self.profile.mailboxes or 0 if self.profile is not None else 0
        self.confirm_test_mailboxes(self.profile_name, count)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "set_oauth" and (self.profile is None or not self.profile.oauth):
            return False  # no provider: nothing to set, and the key stays out of the footer
        return super().check_action(action, parameters)

    def action_set_oauth(self) -> None:
        """``profile set-oauth``: the client credential of the profile's OAuth provider."""
        if self.profile is None:
            return
        if not self.profile.oauth:
            self.notify(f"Profile {self.profile_name} has no OAuth2 provider: choose one in its form (e) first",
                        severity="warning", markup=False)
            return
        self.app.push_screen(OAuthCredentialForm(self.profile_name, self.profile.oauth["provider"]),
                             lambda saved: saved and self.action_reload())

    def action_confirm_secret(self) -> None:
        """R34: send the profile's secrets to its endpoint as it is now."""
        name = self.profile_name

        def confirmed(changed: bool) -> None:
            self.notify("Confirmed for the current endpoint" if changed else "Already confirmed", markup=False)
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: credentials.confirm_profile_secret(self.actor, name), confirmed,
                          group="confirm-secret")

        self.app.push_screen(ConfirmScreen(
            "Confirm secret",
            f"Send the password and token of profile {name} to its current servers from now on? Confirm "
            f"only if that endpoint is the right one."), answered)

    def action_test_connection(self) -> None:
        store = self.app.store
        if store is not None and store.needs_master_password:
            store = None
        self.show_connection_text("Test connection: running…" + ("" if store else " (the secrets store is locked: "
                                                                   "without the profile's credentials)"))
        self.action_pane("settings")
        self.run_connection_test(store)

    def run_connection_test(self, store) -> None:
        name = self.profile_name
        self.call(lambda: check_profile(self.actor, name, store), self.connection_tested, group="connection",
                  title="Test connection")

    def connection_tested(self, result: ProfileCheck) -> None:
        verdict = "passed" if result.passed else "FAILED"
        self.show_connection_text("\n".join([f"Test connection: {verdict}", *check_step_lines(result.directions)]))
        self.notify(f"Profile {result.profile}: {verdict}", title="Test connection",
                    severity="information" if result.passed else "warning", markup=False)

    def show_connection_text(self, text: str) -> None:
        self.connection_text = "\n" + text
        if self.is_mounted:
            shown = self.query_one("#connection", Static)
            shown.update(self.connection_text)
            shown.scroll_visible()


# The new-profile form's first values (its id and row_version are never read: nothing is stored yet).
NEW_PROFILE = ProfileRecord(
    id=0, name="", type=ProfileType.IMAP_SMTP.value,
    incoming=ProfileServer("", 993, TlsMode.IMPLICIT.value, IncomingAuth.MAILBOX.value),
    outgoing=ProfileServer("", 587, TlsMode.STARTTLS.value, OutgoingAuth.MAILBOX.value),
    username="", password_set=False, token_set=False, ca_file=None,
    max_connections=10, timeout_seconds=30, verify_delivery=False, process_email_from=None,
    min_polling_minutes=0, retest_hours=None, processed_folder=None, owner=None, active=True, row_version=0,
)
SECRET_INPUTS = {"password": credentials.PASSWORD, "oauth2_token": credentials.TOKEN}
OAUTH_INPUTS = (
    ("oauth_tenant", "OAuth2 tenant", "microsoft365: the directory (tenant) id"),
    ("oauth_client_id", "OAuth2 client id", "the application (client) id"),
    ("oauth_issuer", "OAuth2 issuer URL", "generic: the provider's https:// issuer"),
    ("oauth_scope", "OAuth2 scope", "empty: the provider's default"),
)


def text(value: Any) -> str:
    return "" if value is None else str(value)


class ProfileFormScreen(DetectsSettings, FormScreen):
    """Create a profile (``row`` None) or edit one; dismisses with the profile's name once saved.
    Password and token are typed masked, written to the keyring only, and shown as set / not set.
    A new profile's servers can be detected from an address first (``DetectStep``)."""

    BINDINGS = [Binding("ctrl+t", "detect", "Detect settings", id="profiles-detect")]
    PERMISSIONS = {**FormScreen.PERMISSIONS, "detect": Permission.CONFIGURE}
    FIELD_ALIASES = {"timeout": "timeout_seconds"}
    DEFAULT_CSS = """
    ProfileFormScreen #oauth-fields { height: auto; }
    """

    def __init__(self, row: ProfileRecord | None):
        super().__init__()
        self.row = row
        self.TITLE_TEXT = f"Edit profile {row.name}" if row else "New email server profile"

    def compose(self) -> ComposeResult:
        row = self.row or NEW_PROFILE
        yield Static(f"mbxtui · {safe(self.TITLE_TEXT)}  (ctrl+s save, esc back)", id="title", markup=False)
        if self.row is None:
            yield DetectStep()
        with self.form():
            yield from self.field("name", "Name", Input(text(row.name)))
            yield from self.field("type", "Type", Select(options(ProfileType), value=row.type, allow_blank=False))
            for side, auth in (("incoming", IncomingAuth), ("outgoing", OutgoingAuth)):
                server: ProfileServer = getattr(row, side)
                title = side.capitalize()
                yield from self.field(f"{side}_host", f"{title} server", Input(text(server.host),
                                                                                 placeholder="host name or IP address"))
                yield from self.field(f"{side}_port", f"{title} port", Input(text(server.port)))
                yield from self.field(f"{side}_tls", f"{title} TLS mode",
                                      Select(options(TlsMode), value=server.tls, allow_blank=False))
                yield from self.field(f"{side}_auth", f"{title} credentials",
                                      Select(options(auth), value=server.auth, allow_blank=False))
            with Vertical(id="oauth-fields"):
                yield from self.oauth_fields(row)
            yield from self.field("username", "Profile user name", Input(
                text(row.username), placeholder="needed for profile credentials"))
            yield from self.field("password", f"Profile password ({set_or_not(row.password_set)})", Input(
                password=True, placeholder="type to replace; empty keeps it"))
            yield from self.field("oauth2_token", f"OAuth2 token ({set_or_not(row.token_set)})", Input(
                password=True, placeholder="type to replace; empty keeps it"))
            yield from self.field("ca_file", "CA bundle file", Input(text(row.ca_file),
                                                                     placeholder="empty: the system CAs"))
            yield from self.field("max_connections", "Max concurrent connections", Input(
                text(row.max_connections), placeholder="1–300"))
            yield from self.field("timeout_seconds", "Connection timeout (seconds)",
                                  Input(text(row.timeout_seconds)))
            yield from self.field("verify_delivery", "Verify delivery (IMAP)", Checkbox(value=row.verify_delivery))
            yield from self.field("process_email_from", "Process email from", Input(
                text(row.process_email_from), placeholder="YYYY-MM-DD (optional)"))
            yield from self.field("min_polling_minutes", "Minimum polling (minutes)",
                                  Input(text(row.min_polling_minutes)))
            yield from self.field("retest_hours", "Re-test after (hours)", Input(
                text(row.retest_hours), placeholder="1–8760; empty: never"))
            yield from self.field("processed_folder", "Processed folder (IMAP)", Input(
                text(row.processed_folder), placeholder="move processed mail here; empty: delete it"))
            yield from self.field("owner", "Owner (gets its alerts)", Input(
                text(row.owner), placeholder="a user's email address (optional)"))
            yield from self.field("active", "Active", Checkbox(value=row.active))
            yield from self.buttons("Create" if self.row is None else "Save")
        yield Footer()

    def oauth_fields(self, row: ProfileRecord) -> ComposeResult:
        """Where oauth2 tokens come from; shown while a side's credentials are oauth2, or while a
        provider is still chosen (so that it can be cleared, as the service asks when neither side is)."""
        oauth = row.oauth or {}
        provider = oauth.get("provider") or "none"
        scope = oauth.get("scope")
        if scope == DEFAULT_SCOPES.get(provider):
            scope = None  # the provider's default, shown as it is kept: not set
        yield from self.field("oauth_provider", "OAuth2 provider", Select(
            options(("none", *OAuthProvider)), value=provider, allow_blank=False))
        for key, title, placeholder in OAUTH_INPUTS:
            value = scope if key == "oauth_scope" else oauth.get(key.removeprefix("oauth_"))
            yield from self.field(key, title, Input(text(value), placeholder=placeholder))

    def form_ready(self) -> None:
        self.show_oauth_fields()
        super().form_ready()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "detect" and self.row is not None:
            return False  # an existing profile's form has no detection step
        return super().check_action(action, parameters)

    def service_failed(self, message: ServiceFailed) -> None:
        if not self.detect_failed(message):
            super().service_failed(message)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("incoming_auth", "outgoing_auth", "oauth_provider"):
            self.show_oauth_fields()

    def show_oauth_fields(self) -> None:
        shown = self.query("#oauth-fields")
        if shown:
            auths = [chosen(self.query_one(f"#{side}_auth", Select)) for side in ("incoming", "outgoing")]
            provider = chosen(self.query_one("#oauth_provider", Select))
            shown.first().display = "oauth2" in auths or provider != "none"

    def action_save(self) -> None:
        changes = self.changed() if self.row else self.values()
        typed = {what: changes.pop(key, "") for key, what in SECRET_INPUTS.items()}
        secrets = {what: value for what, value in typed.items() if value}
        if self.row is not None and not changes and not secrets:
            self.notify("Nothing changed")
            return

        def save() -> tuple[str, str | None]:
            store = self.store_for_secrets() if secrets else None
            if self.row is None:
                name = profiles.create(self.actor, **changes).name
            elif changes:
                name = profiles.update(self.actor, self.row.name, expected_version=self.row.row_version,
                                       **changes).name
            else:
                name = self.row.name
            try:
                for what, value in secrets.items():
                    credentials.set_profile_secret(self.actor, name, value, store, what=what)
            except (MbxError, SecretsError) as exc:
                return name, str(exc)
            return name, None

        def saved(answer: tuple[str, str | None]) -> None:
            name, secret_problem = answer
            if secret_problem is not None:
                self.notify(f"Profile {name} saved, but not its secret: {secret_problem}", severity="error",
                            timeout=10, markup=False)
            self.notify(f"Profile {name} {'created' if self.row is None else 'saved'}", markup=False)
            self.dismiss(name)

        self.run_save(save, saved)
