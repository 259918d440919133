"""A profile's OAuth2 provider through the command line: its settings on `profile add/edit`, refused
when they do not fit together, and its client credential by `profile set-oauth`, kept only in the
keyring, bound to the endpoint and settings it was set for (R34)."""

from __future__ import annotations

import json
from pathlib import Path

import trustme

from mbxtui.core.secrets import SECRETS_FILE_NAME
from tests.cli.conftest import Cli
from tests.core.support import file_bytes

CLIENT_SECRET = "client-Secret~7Fq.9d2e41c0"
TENANT = "0d1c5a8e-1f1e-4c55-9a63-6f2e6b1d2c3a"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
M365 = ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-provider", "microsoft365",
        "--oauth-tenant", TENANT, "--oauth-client-id", CLIENT_ID)


def _add(cli: Cli, name: str, *options: str) -> list[str]:
    return ["profile", "add", "--name", name, "--type", "exchange_online", "--incoming-host", "outlook.office365.com",
            "--incoming-port", "993", "--incoming-tls", "implicit", "--outgoing-host", "smtp.office365.com",
            "--outgoing-port", "587", "--outgoing-tls", "starttls", *options]


def test_a_microsoft365_profile_with_a_client_secret_kept_only_in_the_keyring(cli: Cli):
    shown = cli.json(*_add(cli, "Contoso", *M365))
    assert shown["oauth"] == {"provider": "microsoft365", "tenant": TENANT, "client_id": CLIENT_ID, "issuer": None,
                              "scope": "https://outlook.office365.com/.default", "credential": "not set",
                              "token": {"obtained_on": None, "expires_on": None, "error_code": None,
                                        "error_text": None, "error_on": None}}
    assert cli.ok("profile", "set-oauth", "Contoso", "--client-secret-stdin",
                  input=CLIENT_SECRET + "\n").stdout.strip() == "OAuth client secret of profile Contoso set"
    shown = cli.json("profile", "show", "Contoso")
    assert shown["oauth"]["credential"] == "client_secret set" and shown["secret_endpoint"] == "confirmed"
    outputs = [cli.ok("profile", "show", "Contoso").stdout, json.dumps(shown), cli.ok("audit", "list", "--json").stdout]
    stored = file_bytes(cli.db_path) + (cli.data_dir / SECRETS_FILE_NAME).read_bytes()
    assert all(CLIENT_SECRET not in output for output in outputs) and CLIENT_SECRET.encode() not in stored
    assert cli.scalar("SELECT action FROM audit_entry ORDER BY id DESC LIMIT 1") == "profile.set_oauth"

    # R34: the credential goes nowhere new until confirmed, whether the mail server or the provider moved.
    cli.ok("profile", "edit", "Contoso", "--oauth-tenant", "fabrikam.onmicrosoft.com")
    assert cli.json("profile", "show", "Contoso")["secret_endpoint"] == "not confirmed"
    cli.ok("profile", "confirm-secret", "Contoso")
    assert cli.json("profile", "show", "Contoso")["secret_endpoint"] == "confirmed"


def test_inconsistent_oauth_settings_are_refused_with_a_sentence_and_nothing_written(cli: Cli):
    before = cli.dump()
    refusals = {
        ("--incoming-auth", "mailbox", "--outgoing-auth", "mailbox", "--oauth-provider", "microsoft365",
         "--oauth-tenant", TENANT, "--oauth-client-id", CLIENT_ID):
            "mbxtui: --oauth-provider: needs incoming or outgoing authentication oauth2 "
            "(--incoming-auth oauth2 --outgoing-auth oauth2)",
        ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-provider", "microsoft365",
         "--oauth-client-id", CLIENT_ID):
            "mbxtui: --oauth-tenant: is required with --oauth-provider microsoft365: the directory (tenant) id of "
            "the app registration",
        ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-tenant", TENANT):
            "mbxtui: --oauth-tenant: needs --oauth-provider (microsoft365, google or generic)",
        ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-provider", "generic",
         "--oauth-client-id", "app", "--oauth-issuer", "http://idp.example.test/realms/mail"):
            "mbxtui: --oauth-issuer: 'http://idp.example.test/realms/mail' is not an https:// URL: tokens are "
            "fetched over HTTPS only",
        ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-provider", "google",
         "--oauth-tenant", TENANT):
            "mbxtui: --oauth-tenant: is for microsoft365 only",
        ("--incoming-auth", "oauth2", "--outgoing-auth", "oauth2", "--oauth-provider", "okta"):
            "mbxtui: --oauth-provider: 'okta' is not one of: microsoft365, google, generic",
    }
    for options, sentence in refusals.items():
        assert cli.fails(*_add(cli, "Bad", *options)) == sentence
    assert cli.dump() == before

    cli.ok(*_add(cli, "Contoso", *M365))
    assert cli.fails("profile", "edit", "Contoso", "--incoming-auth", "mailbox", "--outgoing-auth", "mailbox") == (
        "mbxtui: incoming-auth: the profile's tokens come from its OAuth provider microsoft365, which needs "
        "incoming or outgoing authentication oauth2: keep oauth2, or clear the provider (--oauth-provider none)")
    assert cli.fails("profile", "set-oauth", "Contoso", "--service-account-file", "/nonexistent.json") == (
        "mbxtui: --service-account-file: cannot read /nonexistent.json: No such file or directory")
    cleared = cli.json("profile", "edit", "Contoso", "--oauth-provider", "none")
    assert "oauth" not in cleared
    assert [tuple(row) for row in cli.query("SELECT oauth_tenant, oauth_client_id FROM profile WHERE name = 'Contoso'")] == [(None, None)]


def test_a_certificate_file_is_read_once_checked_and_kept_in_the_keyring(cli: Cli, tmp_path: Path):
    cli.ok(*_add(cli, "Contoso", *M365))
    elliptic = trustme.CA().issue_cert("mbxtui-app")
    pem = tmp_path / "app.pem"
    pem.write_bytes(elliptic.private_key_pem.bytes() + elliptic.cert_chain_pems[0].bytes())
    assert cli.fails("profile", "set-oauth", "Contoso", "--certificate-file", str(pem)) == (
        "mbxtui: --certificate-file: the private key is not an RSA key: app certificates sign with RS256, so make "
        "the certificate with an RSA key (2048 bits or more)")
    issued = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("mbxtui-app", key_type=trustme.KeyType.RSA)
    pem.write_bytes(issued.private_key_pem.bytes() + issued.cert_chain_pems[0].bytes())
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(issued.private_key_pem.bytes())
    assert cli.fails("profile", "set-oauth", "Contoso", "--certificate-file", str(key_only)) == (
        "mbxtui: --certificate-file: the file holds no PEM certificate: append the app's certificate to its "
        "private key")
    assert cli.fails("profile", "set-oauth", "Contoso", "--service-account-file", str(pem)) == (
        "mbxtui: --service-account-file: a microsoft365 provider takes a client secret or a certificate, not a "
        "service account")
    cli.ok("profile", "set-oauth", "Contoso", "--certificate-file", str(pem))
    pem.unlink()  # read once: the keyring holds it now
    assert cli.json("profile", "show", "Contoso")["oauth"]["credential"] == "certificate set"
    key_text = issued.private_key_pem.bytes().split(b"\n")[1]
    assert key_text not in file_bytes(cli.db_path) and key_text not in cli.ok("audit", "list", "--json").stdout.encode()
