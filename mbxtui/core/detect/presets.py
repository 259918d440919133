"""The data settings detection works from: the autoconfig addresses, the SRV services (RFC 6186,
RFC 8314), the providers recognised by their MX hosts, and the common host names. Data only: the
modules beside it read these tables."""

from __future__ import annotations

from dataclasses import dataclass

from mbxtui.core.enums import OAuthProvider

# (URL scheme, host template, path): the file's addresses, in the order they are asked. Plain HTTP
# comes last and only counts with a warning: anyone on the way could have changed it.
AUTOCONFIG_URLS = (
    ("https", "autoconfig.{domain}", "/mail/config-v1.1.xml"),
    ("https", "{domain}", "/.well-known/autoconfig/mail/config-v1.1.xml"),
    ("http", "autoconfig.{domain}", "/mail/config-v1.1.xml"),
)
HTTP_PORTS = {"https": 443, "http": 80}

# SRV service -> (protocol, TLS mode). RFC 8314 prefers implicit TLS, so those services come first.
SRV_SERVICES = (
    ("_imaps._tcp", "imap", "implicit"),
    ("_imap._tcp", "imap", "starttls"),
    ("_pop3s._tcp", "pop3", "implicit"),
    ("_pop3._tcp", "pop3", "starttls"),
    ("_submissions._tcp", "smtp", "implicit"),
    ("_submission._tcp", "smtp", "starttls"),
)


@dataclass(frozen=True)
class Server:
    protocol: str  # imap, pop3, smtp
    host: str
    port: int
    tls: str  # implicit, starttls


@dataclass(frozen=True)
class Preset:
    """A provider recognised by the domain's MX hosts: its servers, and who issues its tokens."""

    name: str
    mx_suffixes: tuple[str, ...]  # an MX host equal to one of these (without the dot) or under it
    servers: tuple[Server, ...]
    oauth_provider: OAuthProvider


PRESETS = (
    Preset(
        name="Microsoft 365",
        mx_suffixes=(".mail.protection.outlook.com",),
        servers=(
            Server("imap", "outlook.office365.com", 993, "implicit"),
            Server("pop3", "outlook.office365.com", 995, "implicit"),
            Server("smtp", "smtp.office365.com", 587, "starttls"),
        ),
        oauth_provider=OAuthProvider.MICROSOFT365,
    ),
    Preset(
        name="Google",
        mx_suffixes=(".google.com", ".googlemail.com"),
        servers=(
            Server("imap", "imap.gmail.com", 993, "implicit"),
            Server("smtp", "smtp.gmail.com", 465, "implicit"),
            Server("smtp", "smtp.gmail.com", 587, "starttls"),
        ),
        oauth_provider=OAuthProvider.GOOGLE,
    ),
)

# (protocol, host prefix, port, TLS mode), in the order they are proposed.
COMMON_NAMES = (
    ("imap", "imap", 993, "implicit"),
    ("imap", "imap", 143, "starttls"),
    ("imap", "mail", 993, "implicit"),
    ("imap", "mail", 143, "starttls"),
    ("pop3", "pop", 995, "implicit"),
    ("pop3", "pop", 110, "starttls"),
    ("pop3", "mail", 995, "implicit"),
    ("pop3", "mail", 110, "starttls"),
    ("smtp", "smtp", 465, "implicit"),
    ("smtp", "smtp", 587, "starttls"),
    ("smtp", "mail", 465, "implicit"),
    ("smtp", "mail", 587, "starttls"),
)

# What the product logs in with (core/probes): a password by PLAIN (POP3 also USER/PASS), a token
# by XOAUTH2 or OAUTHBEARER.
PASSWORD_MECHANISMS = frozenset({"PLAIN", "USER"})
TOKEN_MECHANISMS = frozenset({"XOAUTH2", "OAUTHBEARER"})


def preset_for(mx_host: str) -> Preset | None:
    host = mx_host.rstrip(".").lower()
    for preset in PRESETS:
        if any(host.endswith(suffix) or host == suffix[1:] for suffix in preset.mx_suffixes):
            return preset
    return None
