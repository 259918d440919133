"""A profile's OAuth2 settings: which provider issues its tokens, for which client, with which
scope; cleaned field by field and checked together before a profile is saved (no database here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection
from urllib.parse import urlsplit

from mbxtui.core import validation
from mbxtui.core.enums import OAuthCredential, OAuthProvider
from mbxtui.core.errors import InvalidInput

FIELDS = ("oauth_provider", "oauth_tenant", "oauth_client_id", "oauth_issuer", "oauth_scope")
CLEARED = ("", "none")
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPES = {
    OAuthProvider.MICROSOFT365: "https://outlook.office365.com/.default",
    OAuthProvider.GOOGLE: "https://mail.google.com/",
}
# Which client credentials each provider takes (``profile set-oauth``).
CREDENTIALS = {
    OAuthProvider.MICROSOFT365: (OAuthCredential.CLIENT_SECRET, OAuthCredential.CERTIFICATE),
    OAuthProvider.GENERIC: (OAuthCredential.CLIENT_SECRET,),
    OAuthProvider.GOOGLE: (OAuthCredential.SERVICE_ACCOUNT,),
}
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")  # a directory id (GUID) or a domain name
_CLIENT_ID = re.compile(r"^[!-~]{1,255}$")  # printable ASCII, no spaces
_SCOPE = re.compile(r"^[!-~]+( [!-~]+)*$")


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def clean(field: str, value: Any) -> str | None:
    """One OAuth field as typed; ``none`` or empty clears it."""
    option = _option(field)
    raw = validation.text(option, value, max_length=1000, required=False)
    if raw.lower() in CLEARED:
        return None
    if field == "oauth_provider":
        return validation.choice(option, raw, OAuthProvider).value
    if field == "oauth_tenant" and not _TENANT.match(raw):
        raise InvalidInput(option, f"{validation.shown(raw)} is not a tenant id: give the directory (tenant) "
                                   "id, a GUID, or the tenant's domain name")
    if field == "oauth_client_id" and not _CLIENT_ID.match(raw):
        raise InvalidInput(option, f"{validation.shown(raw)} is not a client id: it has spaces or "
                                   "characters outside printable ASCII")
    if field == "oauth_scope" and not _SCOPE.match(raw):
        raise InvalidInput(option, f"{validation.shown(raw)} is not a scope: scopes are printable ASCII, "
                                   "separated by single spaces")
    if field == "oauth_issuer":
        return _issuer(option, raw)
    return raw


def _issuer(option: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput(option, f"{validation.shown(raw)} is not an https:// URL: tokens are fetched over "
                                   "HTTPS only")
    if parts.query or parts.fragment:
        raise InvalidInput(option, f"{validation.shown(raw)} has a query or a fragment: give the issuer's "
                                   "base URL")
    validation.host(option, parts.hostname)
    return raw.rstrip("/")


def check(values: dict[str, Any], changed: Collection[str] = ()) -> None:
    """The OAuth fields of a profile together with its authentication: refused when they do not
    fit (a tenant without microsoft365, a provider on a profile that does not use oauth2...)."""
    provider = values.get("oauth_provider")
    uses_oauth2 = "oauth2" in (values["incoming_auth"], values["outgoing_auth"])
    if provider is None:
        extra = [field for field in FIELDS[1:] if values.get(field)]
        if extra:
            raise InvalidInput(_option(extra[0]), "needs --oauth-provider (microsoft365, google or generic)")
        return
    if not uses_oauth2:
        if changed and "oauth_provider" not in changed:
            raise InvalidInput("incoming-auth", f"the profile's tokens come from its OAuth provider {provider}, "
                                                "which needs incoming or outgoing authentication oauth2: keep "
                                                "oauth2, or clear the provider (--oauth-provider none)")
        raise InvalidInput("--oauth-provider", "needs incoming or outgoing authentication oauth2 "
                                               "(--incoming-auth oauth2 --outgoing-auth oauth2)")
    tenant, client_id, issuer = values.get("oauth_tenant"), values.get("oauth_client_id"), values.get("oauth_issuer")
    if provider == OAuthProvider.MICROSOFT365:
        if not tenant:
            raise InvalidInput("--oauth-tenant", "is required with --oauth-provider microsoft365: the directory "
                                                 "(tenant) id of the app registration")
        if not client_id:
            raise InvalidInput("--oauth-client-id", "is required with --oauth-provider microsoft365: the "
                                                    "application (client) id of the app registration")
    elif provider == OAuthProvider.GENERIC:
        if tenant:
            raise InvalidInput("--oauth-tenant", "is for microsoft365 only: a generic provider is named by "
                                                 "its --oauth-issuer URL")
        if not issuer:
            raise InvalidInput("--oauth-issuer", "is required with --oauth-provider generic: the provider's "
                                                 "issuer URL (its /.well-known/openid-configuration is read)")
        if not client_id:
            raise InvalidInput("--oauth-client-id", "is required with --oauth-provider generic")
    elif provider == OAuthProvider.GOOGLE:
        for field, why in (("oauth_tenant", "is for microsoft365 only"),
                           ("oauth_issuer", "is not used with google: the service account's key file names "
                                            "its token endpoint")):
            if values.get(field):
                raise InvalidInput(_option(field), why)


def cleared_with_provider(before: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Clearing the provider (``--oauth-provider none``) clears the other OAuth fields with it."""
    if "oauth_provider" in changes and changes["oauth_provider"] is None:
        return {**{field: None for field in FIELDS[1:] if before.get(field) is not None}, **changes}
    return changes


@dataclass(frozen=True)
class OAuthSettings:
    """What a token request needs, from a profile (row or snapshot); ``scope`` with the provider's
    default filled in. ``authority`` is the base URL tokens come from: the issuer for generic, the
    Microsoft login host (or the one given as issuer: a national cloud) for microsoft365."""

    profile_id: int
    provider: str
    tenant: str | None
    client_id: str | None
    issuer: str | None
    scope: str | None
    ca_file: str | None
    timeout: float

    @property
    def authority(self) -> str:
        if self.provider == OAuthProvider.MICROSOFT365:
            return f"{self.issuer or MICROSOFT_AUTHORITY}/{self.tenant}"
        return self.issuer or ""

    @property
    def where(self) -> str:
        """The provider as a sentence names it."""
        if self.provider == OAuthProvider.GOOGLE:
            return "Google's token endpoint"
        return self.authority


def settings_of(profile: Any) -> OAuthSettings | None:
    """The OAuth settings of ``profile``, or None when its tokens are not fetched by mbxtui."""
    provider = getattr(profile, "oauth_provider", None)
    if not provider:
        return None
    return OAuthSettings(
        profile_id=profile.id, provider=provider, tenant=profile.oauth_tenant, client_id=profile.oauth_client_id,
        issuer=profile.oauth_issuer, scope=profile.oauth_scope or DEFAULT_SCOPES.get(OAuthProvider(provider)),
        ca_file=profile.ca_file, timeout=float(profile.timeout_seconds),
    )
