"""OAuth2 in the console: the profile form's provider fields (shown only for oauth2, refused by the
service's own checks), the client credential set from the profile detail (to the keyring only), and
the token state the processes that fetch tokens record (a real fetch from the lab's identity
provider, a refused client), as the profile detail and ``profile show`` show it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from mbxtui.core.oauth import tokens
from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.services import credentials, profiles
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.forms import OAuthCredentialForm
from mbxtui.tui.screens.profiles import ProfileDetailScreen, ProfileFormScreen
from tests.backends import dump
from tests.core.support import snapshot
from tests.lab.oauth_fixtures import lab_certificates, provider  # noqa: F401  (fixtures)
from tests.lab.oauth_provider import OAuthProvider, client_certificate
from tests.tui.test_screens import (  # noqa: F401 (fixtures)
    World, closed_port, fill, notifications, offered, settle, store, text_of, world,
)

TENANT = "5d2e8f7a-console-lab"
SECRET = "Console~client.secret-8Kd3Lp"
M365 = "M365"


def m365_profile(world: World, client_id: str, *, issuer: str = "https://login.lab.test",
                 ca_file: str | None = None) -> None:
    port = closed_port()
    profiles.create(world.admin, name=M365, type="imap_smtp", incoming_host="127.0.0.1", incoming_port=port,
                    incoming_tls="implicit", incoming_auth="oauth2", outgoing_host="127.0.0.1", outgoing_port=port,
                    outgoing_tls="implicit", outgoing_auth="oauth2", timeout_seconds=5, oauth_provider="microsoft365",
                    oauth_tenant=TENANT, oauth_client_id=client_id, oauth_issuer=issuer, ca_file=ca_file)


def run(world: World, scenario, size: tuple[int, int] = (100, 40)) -> MbxApp:
    app = MbxApp(world.admin, db_path=world.path, data_dir=world.data_dir, run_tests=False, store=world.store)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def settings_text(app: MbxApp) -> str:
    return text_of(app.screen.query_one("#settings-text", Static))


def line(text: str, title: str) -> str:
    """The value on the detail's line titled ``title``."""
    found = [row[len(title):].strip() for row in text.splitlines() if row.startswith(title + " ")]
    assert found, f"no line {title!r} in:\n{text}"
    return found[0]


async def open_form(app: MbxApp, pilot: Pilot, name: str) -> ProfileFormScreen:
    await app.push_screen(ProfileDetailScreen(name))
    await settle(app, pilot)
    await pilot.press("e")
    await settle(app, pilot)
    assert isinstance(app.screen, ProfileFormScreen)
    return app.screen


async def save(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("ctrl+s")
    await settle(app, pilot)


def test_the_oauth_fields_appear_for_oauth2_and_are_refused_or_saved_by_the_profile_service(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_form(app, pilot, "imap")
        fields = form.query_one("#oauth-fields")
        assert not fields.display  # mailbox credentials on both sides: no OAuth fields
        fill(form, outgoing_auth="oauth2")
        await pilot.pause()
        assert fields.display
        fill(form, incoming_auth="oauth2", oauth_provider="microsoft365", oauth_client_id="6731de76")
        before = snapshot()
        await save(app, pilot)
        assert app.screen is form
        assert text_of(form.query_one("#error-oauth_tenant", Static)) == (
            "is required with --oauth-provider microsoft365: the directory (tenant) id of the app registration")
        assert form.focused is form.query_one("#oauth_tenant")
        assert snapshot() == before

        fill(form, oauth_tenant="contoso.onmicrosoft.com")
        await save(app, pilot)
        assert isinstance(app.screen, ProfileDetailScreen)
        oauth = profiles.show(world.admin, "imap").oauth
        assert (oauth["provider"], oauth["tenant"], oauth["client_id"], oauth["issuer"]) == (
            "microsoft365", "contoso.onmicrosoft.com", "6731de76", None)
        assert line(settings_text(app), "OAuth2 provider") == (
            "microsoft365, tenant contoso.onmicrosoft.com, client 6731de76")
        assert line(settings_text(app), "Last OAuth2 token") == "none yet with these settings"

        await pilot.press("e")
        await settle(app, pilot)
        form = app.screen
        assert form.query_one("#oauth-fields").display
        assert form.query_one("#oauth_scope").value == ""  # the provider's default is not written in
        fill(form, incoming_auth="mailbox", outgoing_auth="mailbox")
        await pilot.pause()
        assert form.query_one("#oauth-fields").display  # a provider is still chosen: shown, to be cleared
        before = snapshot()
        await save(app, pilot)
        assert app.screen is form
        assert text_of(form.query_one("#error-incoming_auth", Static)).startswith(
            "the profile's tokens come from its OAuth provider microsoft365, which needs incoming or outgoing "
            "authentication oauth2")
        assert snapshot() == before
        fill(form, oauth_provider="none")
        await pilot.pause()
        assert not form.query_one("#oauth-fields").display
        await save(app, pilot)
        assert isinstance(app.screen, ProfileDetailScreen)
        cleared = profiles.get("imap")
        assert (cleared.incoming_auth, cleared.oauth_provider, cleared.oauth_tenant, cleared.oauth_client_id) == (
            "mailbox", None, None, None)
        assert not [row for row in settings_text(app).splitlines()
                    if row.startswith(("OAuth2 provider", "OAuth client credential", "Last OAuth2 token"))]

    run(world, scenario)


def test_the_client_credential_goes_to_the_keyring_only(world: World, tmp_path: Path):
    m365_profile(world, "app-console")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen("imap"))
        await settle(app, pilot)
        assert not offered(app.screen, "o")  # no provider: nothing to set
        app.pop_screen()
        await app.push_screen(ProfileDetailScreen(M365))
        await settle(app, pilot)
        detail = app.screen
        assert offered(detail, "o")
        assert line(settings_text(app), "OAuth client credential") == "not set"
        await pilot.press("o")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, OAuthCredentialForm)
        assert form.query_one("#client_secret").parent.display and not form.query_one("#credential_file").parent.display
        fill(form, kind="certificate")
        await pilot.pause()
        assert form.query_one("#credential_file").parent.display and not form.query_one("#client_secret").parent.display
        fill(form, credential_file=str(tmp_path / "missing.pem"))
        before = snapshot()
        await save(app, pilot)
        assert app.screen is form
        assert "cannot read" in text_of(form.query_one("#error-credential_file", Static))
        assert snapshot() == before

        fill(form, kind="client_secret")
        await pilot.pause()
        form.query_one("#client_secret").focus()
        await pilot.press(*SECRET)
        await pilot.pause()
        assert SECRET not in str(app.export_screenshot())
        await save(app, pilot)
        assert app.screen is detail
        assert line(settings_text(app), "OAuth client credential") == "client_secret set"
        assert SECRET not in str(app.export_screenshot())
        assert "OAuth client secret of profile M365 set" in notifications(app)

        cert, key = client_certificate()
        pem = tmp_path / "app.pem"
        pem.write_bytes(key + cert)
        await pilot.press("o")
        await settle(app, pilot)
        fill(app.screen, kind="certificate", credential_file=str(pem))
        await pilot.pause()
        await save(app, pilot)
        assert app.screen is detail
        assert line(settings_text(app), "OAuth client credential") == "certificate set"

    run(world, scenario)
    profile_id = profiles.get(M365).id
    stored = credentials.profile_secret(world.store, profile_id, credentials.OAUTH_CREDENTIAL).reveal()
    assert "BEGIN PRIVATE KEY" in stored  # the certificate replaced the secret
    held = "\n".join(dump(world.path))
    assert SECRET not in held and "PRIVATE KEY" not in held


def test_the_profile_detail_shows_the_token_a_process_obtained_and_never_the_token(world: World,
                                                                                   provider: OAuthProvider):
    provider.register(TENANT, "app-fetched", secret=SECRET)
    m365_profile(world, "app-fetched", issuer=provider.url, ca_file=str(provider.certificates.ca_file))
    credentials.set_profile_oauth(world.admin, M365, "client_secret", SECRET, world.store)
    # A worker's fetch, elsewhere in this process: its token stays in memory, its state is recorded.
    settings = settings_of(profiles.get(M365))
    tokens.token(settings, "client_secret", credentials.profile_secret(
        world.store, profiles.get(M365).id, credentials.OAUTH_CREDENTIAL))
    assert provider.requests_of("app-fetched") == 1

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen(M365))
        await settle(app, pilot)
        text = settings_text(app)
        assert line(text, "OAuth2 provider") == f"microsoft365, tenant {TENANT}, client app-fetched, at {provider.url}"
        obtained = datetime.fromisoformat(line(text, "Last OAuth2 token"))
        expires = datetime.fromisoformat(line(text, "OAuth2 token expires"))
        assert (expires - obtained).total_seconds() == provider.token_lifetime
        assert line(text, "Last OAuth2 token error") == "none"
        assert all(token not in text for token in provider.issued)

    run(world, scenario)
    token = profiles.show(world.admin, M365).as_dict()["oauth"]["token"]  # profile show --json
    assert token["obtained_on"] and token["error_code"] is None
    assert abs((datetime.fromisoformat(token["obtained_on"]) - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds()) < 60
    held = "\n".join(dump(world.path))
    assert provider.issued and all(issued not in held for issued in provider.issued)


def test_a_refused_client_shows_its_error_in_the_profile_detail(world: World, provider: OAuthProvider):
    provider.register(TENANT, "app-refused", secret=SECRET)
    m365_profile(world, "app-refused", issuer=provider.url, ca_file=str(provider.certificates.ca_file))
    credentials.set_profile_oauth(world.admin, M365, "client_secret", "not-the-secret", world.store)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await app.push_screen(ProfileDetailScreen(M365))
        await settle(app, pilot)
        assert line(settings_text(app), "Last OAuth2 token error") == "none"
        await pilot.press("c")  # Test connection asks the provider for a token
        await settle(app, pilot)
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        text = settings_text(app)
        error = line(text, "Last OAuth2 token error")
        assert error.startswith("OAUTH_CLIENT_REJECTED at ")
        recorded = profiles.show(world.admin, M365).as_dict()["oauth"]["token"]
        assert error == f"OAUTH_CLIENT_REJECTED at {recorded['error_on']}: {recorded['error_text']}"
        assert "not-the-secret" not in recorded["error_text"]
        assert line(text, "Last OAuth2 token") == "none yet with these settings"

    run(world, scenario)
    assert provider.requests_of("app-refused") == 1


def test_a_new_profile_is_created_with_a_generic_provider_from_the_form(world: World):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.action_go("profiles")
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, ProfileFormScreen) and not form.query_one("#oauth-fields").display
        fill(form, name="Keycloak", incoming_host="127.0.0.1", outgoing_host="127.0.0.1", incoming_auth="oauth2",
             outgoing_auth="oauth2", oauth_provider="generic", oauth_client_id="mbxtui",
             oauth_issuer="https://idp.example.test/realms/mail/", oauth_tenant="contoso")
        await pilot.pause()
        assert form.query_one("#oauth-fields").display
        await save(app, pilot)
        assert app.screen is form
        assert text_of(form.query_one("#error-oauth_tenant", Static)).startswith("is for microsoft365 only")
        fill(form, oauth_tenant="")
        await save(app, pilot)
        assert app.screen is not form
        oauth = profiles.show(world.admin, "Keycloak").oauth
        assert (oauth["provider"], oauth["client_id"], oauth["issuer"], oauth["tenant"], oauth["scope"]) == (
            "generic", "mbxtui", "https://idp.example.test/realms/mail", None, None)

    run(world, scenario)
