"""Where each secret lives in the keyring: the key names the database's install, the record and what
the secret is, so two databases on one keyring never share secrets."""

from __future__ import annotations

from mbxtui.core.db import install_id

PASSWORD = "password"
TOKEN = "oauth2-token"
OAUTH_CREDENTIAL = "oauth-credential"  # the profile's client secret, certificate or service account key


def secret_key(kind: str, record_id: int, what: str, install: str | None = None) -> str:
    return f"{install or install_id()}/{kind}/{record_id}/{what}"
