"""The console's "Detect from an address" step of the new-profile form, against the local DNS
server, the local autoconfig server and the lab's Dovecot and SMTP servers (as
tests/integration/test_profile_detect.py); and "Authorize" on a mailbox's detail, the device-code
flow against the lab's HTTPS identity provider, its code approved (or declined) by the provider's
test-only call while the dialog waits. No token may appear anywhere on the screen."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from mbxtui.core.oauth import delegated
from mbxtui.core.services import credentials, mailboxes, profiles, users
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.authorize import AuthorizeScreen
from mbxtui.tui.screens.detect_step import DetectStep
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.profiles import ProfileFormScreen, ProfilesScreen
from tests.core.support import snapshot
from tests.lab import MailLab
from tests.lab.autoconfig_server import CONFIG_PATH, AutoconfigServer, config_xml
from tests.lab.certs import DETECTION_DOMAIN
from tests.lab.dns_server import LabDnsServer
from tests.lab.oauth_fixtures import lab_certificates, provider  # noqa: F401  (fixtures)
from tests.lab.oauth_provider import OAuthProvider
from tests.tui.test_screens import World, closed_port, fill, offered, settle, store, text_of, world  # noqa: F401

pytestmark = pytest.mark.servers

DOMAIN = DETECTION_DOMAIN
AUTOCONFIG_HOST = f"autoconfig.{DOMAIN}"
CLIENT = "mbxtui-console-device-app"
TENANT = "7c2d-console-delegated"
ALICE = "alice@corp.test"


def run(world: World, scenario: Any, *, reach_ports: dict[int, int] | None = None) -> MbxApp:
    app = MbxApp(world.admin, db_path=world.path, data_dir=world.data_dir, run_tests=False, store=world.store,
                 reach_ports=reach_ports)

    async def main() -> None:
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def screen_text(app: MbxApp) -> str:
    """Every text the console shows now, on every open screen: its statics, inputs and notifications."""
    parts: list[str] = []
    for screen in app.screen_stack:
        parts += [text_of(static) for static in screen.query(Static)]
        parts += [box.value for box in screen.query(Input)]
    parts += [str(note.message) for note in app._notifications]
    return "\n".join(parts)


def standard_ports(lab: MailLab, web_port: int) -> dict[int, int]:
    ports = lab.ports
    return {993: ports["imaps"], 143: ports["imap"], 995: ports["pop3s"], 110: ports["pop3"],
            465: ports["smtps"], 587: ports["smtp"], 443: web_port, 80: ports["refused"]}


def a(*hosts: str) -> str:
    return "".join(f"{host}. 60 IN A 127.0.0.1\n" for host in hosts)


async def new_profile_form(app: MbxApp, pilot: Pilot) -> ProfileFormScreen:
    app.action_go("profiles")
    await settle(app, pilot)
    await pilot.press("a")
    await settle(app, pilot)
    assert isinstance(app.screen, ProfileFormScreen)
    return app.screen


def shown_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the step showed, in order (each source is shown as it is consulted, then replaced)."""
    steps: list[str] = []
    original = DetectStep.show

    def recording(step: DetectStep, text: str) -> None:
        steps.append(text)
        original(step, text)

    monkeypatch.setattr(DetectStep, "show", recording)
    return steps


# -- detection in the new-profile form --

def test_detection_fills_the_form_from_the_autoconfig_file_and_saves_only_when_asked(
        world: World, mail_lab: MailLab, monkeypatch: pytest.MonkeyPatch):
    ports = mail_lab.ports
    xml = config_xml(DOMAIN, [("imap", f"mail.{DOMAIN}", ports["imap"], "STARTTLS"),
                              ("smtp", f"mail.{DOMAIN}", ports["smtps"], "SSL")])
    steps = shown_steps(monkeypatch)

    with LabDnsServer(a(AUTOCONFIG_HOST, f"mail.{DOMAIN}")) as dns, \
            AutoconfigServer({(AUTOCONFIG_HOST, CONFIG_PATH): xml}, mail_lab) as web:
        async def scenario(app: MbxApp, pilot: Pilot) -> None:
            form = await new_profile_form(app, pilot)
            assert offered(form, "ctrl+t")
            fill(form, detect_email=f"alice@{DOMAIN}", detect_dns_server=dns.address, ca_file=mail_lab.ca_file)
            before = snapshot()
            await pilot.press("ctrl+t")
            await settle(app, pilot)
            assert app.screen is form
            assert snapshot() == before, "detection saved nothing"
            values = form.values()
            assert {key: values[key] for key in ("type", "incoming_host", "incoming_port", "incoming_tls",
                                                 "incoming_auth", "outgoing_host", "outgoing_port",
                                                 "outgoing_tls", "outgoing_auth", "oauth_provider")} == {
                "type": "imap_smtp", "incoming_host": f"mail.{DOMAIN}", "incoming_port": str(ports["imap"]),
                "incoming_tls": "starttls", "incoming_auth": "mailbox", "outgoing_host": f"mail.{DOMAIN}",
                "outgoing_port": str(ports["smtps"]), "outgoing_tls": "implicit", "outgoing_auth": "mailbox",
                "oauth_provider": "none"}
            shown = text_of(form.query_one("#detect-text", Static))
            assert shown.startswith(f"Proposed for alice@{DOMAIN}: IMAP mail.{DOMAIN}:{ports['imap']} starttls")
            assert f"autoconfig file: https://{AUTOCONFIG_HOST}{CONFIG_PATH} names 2 server(s)" in shown
            assert "SRV records: not consulted: settings were complete after the autoconfig file" in shown

            fill(form, name="Detected")
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            assert isinstance(app.screen, ProfilesScreen)
            created = profiles.show(world.admin, "Detected")
            assert (created.incoming.host, created.incoming.port, created.incoming.tls) == (
                f"mail.{DOMAIN}", ports["imap"], "starttls")
            assert (created.outgoing.port, created.outgoing.tls, created.ca_file) == (
                ports["smtps"], "implicit", mail_lab.ca_file)

        run(world, scenario, reach_ports=standard_ports(mail_lab, web.port))
    assert steps[1] == f"Detecting the settings of alice@{DOMAIN}: consulting the autoconfig file…"
    assert web.requests == [(AUTOCONFIG_HOST, CONFIG_PATH)]


def test_nothing_found_shows_each_source_consulted_and_the_services_sentence_and_fills_nothing(
        world: World, mail_lab: MailLab, monkeypatch: pytest.MonkeyPatch):
    steps = shown_steps(monkeypatch)
    with LabDnsServer("") as dns:
        async def scenario(app: MbxApp, pilot: Pilot) -> None:
            form = await new_profile_form(app, pilot)
            fill(form, detect_email=f"bob@{DOMAIN}", detect_dns_server=dns.address)
            before = form.values()
            await pilot.press("ctrl+t")
            await settle(app, pilot)
            assert form.values() == before
            shown = text_of(form.query_one("#detect-text", Static))
            assert shown.startswith(f"Nothing to propose: no usable incoming (IMAP or POP3) or outgoing (SMTP) "
                                    f"server was found for {DOMAIN} (no source named a server)")
            fill(form, detect_email="not an address")
            await pilot.press("ctrl+t")
            await settle(app, pilot)
            assert text_of(form.query_one("#detect-text", Static)).startswith("Detection: ")
            assert "email" in text_of(form.query_one("#detect-text", Static))

        run(world, scenario, reach_ports=standard_ports(mail_lab, mail_lab.ports["refused"]))
    consulted = [step for step in steps if "consulting" in step]
    assert consulted[-1].endswith("consulting the autoconfig file, then the SRV records, then the MX-based "
                                  "preset, then the common host names…"), consulted
    assert len(consulted) == 4


def test_a_microsoft_365_mx_fills_oauth2_with_its_provider_and_the_domain_as_tenant(world: World, mail_lab: MailLab):
    with LabDnsServer(f"{DOMAIN}. 60 IN MX 0 detect-test.mail.protection.outlook.com.\n") as dns:
        async def scenario(app: MbxApp, pilot: Pilot) -> None:
            form = await new_profile_form(app, pilot)
            fill(form, detect_email=f"carol@{DOMAIN}", detect_dns_server=dns.address)
            await pilot.press("ctrl+t")
            await settle(app, pilot)
            values = form.values()
            assert (values["incoming_host"], values["incoming_auth"], values["outgoing_auth"],
                    values["oauth_provider"], values["oauth_tenant"]) == (
                "outlook.office365.com", "oauth2", "oauth2", "microsoft365", DOMAIN)
            assert form.query_one("#oauth-fields").display
            assert form.query_one("#oauth_provider", Select).value == "microsoft365"

        run(world, scenario, reach_ports=standard_ports(mail_lab, mail_lab.ports["refused"]))


def test_an_existing_profiles_form_has_no_detection_step(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("profiles")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, ProfileFormScreen) and not form.query(DetectStep)
        assert not offered(form, "ctrl+t")

    run(world, scenario)


# -- authorize on a mailbox's detail --

def delegated_mailbox(world: World, provider: OAuthProvider) -> int:
    provider.register(TENANT, CLIENT)
    port = closed_port()
    profiles.create(world.admin, name="Delegated", type="imap_smtp", incoming_host="127.0.0.1", incoming_port=port,
                    incoming_tls="implicit", incoming_auth="oauth2", outgoing_host="127.0.0.1", outgoing_port=port,
                    outgoing_tls="implicit", outgoing_auth="oauth2", timeout_seconds=5, oauth_provider="generic",
                    oauth_issuer=f"{provider.url}/generic", oauth_client_id=CLIENT,
                    ca_file=str(provider.certificates.ca_file))
    users.add_user(world.admin, "Alice Adams", ALICE)
    mailboxes.edit(world.admin, ALICE, profile="Delegated")
    return mailboxes.get(ALICE).id


def refresh_token_of(world: World, mailbox_id: int) -> str | None:
    return world.store.get(credentials.secret_key("mailbox", mailbox_id, delegated.REFRESH_TOKEN))


async def open_authorize(app: MbxApp, pilot: Pilot, mailbox_id: int) -> AuthorizeScreen:
    await app.push_screen(MailboxDetailScreen(mailbox_id))
    await settle(app, pilot)
    assert offered(app.screen, "z")
    await pilot.press("z")
    dialog = app.screen
    assert isinstance(dialog, AuthorizeScreen)
    for _ in range(200):
        if dialog.code is not None:
            return dialog
        await pilot.pause(0.05)
    raise AssertionError("no code was shown")


async def until_finished(pilot: Pilot, dialog: AuthorizeScreen) -> None:
    for _ in range(300):
        if dialog.finished:
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the authorization did not end")


def test_authorize_shows_the_code_waits_for_the_approval_and_stores_the_refresh_token_only_in_the_keyring(
        world: World, provider: OAuthProvider):
    mailbox_id = delegated_mailbox(world, provider)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        dialog = await open_authorize(app, pilot, mailbox_id)
        code = dialog.code
        shown = text_of(dialog.query_one("#authorize-code", Static))
        assert code.verification_uri in shown and code.user_code in shown
        assert code.verification_uri.startswith(provider.url)
        await pilot.pause(1.5)
        assert not dialog.finished and refresh_token_of(world, mailbox_id) is None, "it waits for the approval"
        provider.approve(code.user_code, ALICE)
        await until_finished(pilot, dialog)
        assert text_of(dialog.query_one("#authorize-outcome", Static)).startswith(f"Mailbox {ALICE} authorized")
        stored = refresh_token_of(world, mailbox_id)
        assert stored and stored in provider.live_refresh_tokens(ALICE)
        everything = screen_text(app)
        for token in [stored, *provider.issued]:
            assert token not in everything
        await pilot.press("escape")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, MailboxDetailScreen)
        assert detail.row["oauth2_token"] == "set"  # reloaded after the dialog
        assert stored not in screen_text(app)

    run(world, scenario)


def test_a_declined_code_is_the_services_sentence_and_esc_while_waiting_stores_nothing(
        world: World, provider: OAuthProvider):
    mailbox_id = delegated_mailbox(world, provider)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        dialog = await open_authorize(app, pilot, mailbox_id)
        provider.deny(dialog.code.user_code)
        await until_finished(pilot, dialog)
        assert text_of(dialog.query_one("#authorize-outcome", Static)).startswith(
            "Not authorized: the sign-in was declined at ")
        await pilot.press("escape")
        await settle(app, pilot)

        dialog = await open_authorize(app, pilot, mailbox_id)
        waiting = provider.device(dialog.code.user_code)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxDetailScreen)
        polls = waiting.polls
        provider.approve(dialog.code.user_code, ALICE)
        await pilot.pause(2.5)
        assert provider.device(dialog.code.user_code).polls == polls, "the flow stopped polling"

    run(world, scenario)
    assert refresh_token_of(world, mailbox_id) is None
    assert not provider.live_refresh_tokens(ALICE)


def test_authorize_is_offered_only_on_a_profile_whose_mailboxes_authorize_themselves(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailboxes.get("bob@corp.test").id))
        await settle(app, pilot)
        assert app.screen.row and not offered(app.screen, "z")

    run(world, scenario)


def test_deauthorize_asks_once_revokes_at_the_provider_and_removes_the_refresh_token(
        world: World, provider: OAuthProvider):
    import threading

    from mbxtui.core.services import authorizations
    from mbxtui.tui.widgets.confirm import ConfirmScreen

    mailbox_id = delegated_mailbox(world, provider)

    def approve(code: delegated.DeviceCode) -> None:
        threading.Timer(0.0, provider.approve, (code.user_code, ALICE)).start()

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailbox_id))
        await settle(app, pilot)
        assert not offered(app.screen, "Z"), "nothing to take back yet"
        authorizations.authorize(world.admin, ALICE, world.store, approve)
        held = refresh_token_of(world, mailbox_id)
        detail = app.screen
        detail.action_reload()
        await settle(app, pilot)
        assert offered(detail, "Z")
        await pilot.press("Z")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert refresh_token_of(world, mailbox_id) == held, "nothing happens before the answer"
        await pilot.press("y")
        for _ in range(200):
            if refresh_token_of(world, mailbox_id) is None and not detail.row.get("authorization"):
                break
            await pilot.pause(0.05)
        await settle(app, pilot)
        assert refresh_token_of(world, mailbox_id) is None
        assert held in provider.revocations and held not in provider.live_refresh_tokens(ALICE)
        assert any(f"Deauthorized {ALICE}" in str(note.message) and "the grant was revoked at" in str(note.message)
                   for note in app._notifications)
        assert not offered(detail, "Z") and offered(detail, "z")
        assert held not in screen_text(app)

    run(world, scenario)


def test_a_new_address_saved_in_the_form_takes_the_refresh_token_out_of_the_keyring_and_warns_of_the_revocation(
        world: World, provider: OAuthProvider):
    import threading

    from mbxtui.core.services import authorizations
    from mbxtui.tui.screens.mailbox_detail import MailboxEditScreen

    mailbox_id = delegated_mailbox(world, provider)
    authorizations.authorize(world.admin, ALICE, world.store, lambda code: threading.Timer(
        0.0, provider.approve, (code.user_code, ALICE)).start())
    assert refresh_token_of(world, mailbox_id) is not None

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(MailboxDetailScreen(mailbox_id))
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, MailboxEditScreen)
        fill(form, email="alice.new@corp.test")
        provider.unavailable = True  # the grant cannot be revoked: saved all the same, with a warning
        await pilot.press("ctrl+s")
        for _ in range(200):
            if not isinstance(app.screen, MailboxEditScreen):
                break
            await pilot.pause(0.05)
        await settle(app, pilot)
        assert not isinstance(app.screen, MailboxEditScreen), screen_text(app)
        assert any(note.severity == "warning" and f"the authorization of {ALICE} was dropped, but not revoked"
                   in str(note.message) and "HTTP 503" in str(note.message) for note in app._notifications), \
            [str(note.message) for note in app._notifications]

    run(world, scenario)
    left = refresh_token_of(world, mailbox_id) is not None  # not compared: a failure would print it
    assert not left and mailboxes.get("alice.new@corp.test").id == mailbox_id
    assert authorizations.state_of(world.admin, "alice.new@corp.test") is None
