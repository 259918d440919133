"""Settings detection's pure parts: reading an autoconfig file, recognising a provider by its MX
host, and reading --dns-server."""

from __future__ import annotations

import pytest

from mbxtui.core.detect.autoconfig import NotAConfig, parse
from mbxtui.core.detect.lookup import parse_dns_server
from mbxtui.core.detect.model import Source
from mbxtui.core.detect.presets import preset_for
from mbxtui.core.errors import InvalidInput

CONFIG = b"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="corp.test">
  <incomingServer type="imap"><hostname>IMAP.%EMAILDOMAIN%</hostname><port>993</port>
    <socketType>SSL</socketType></incomingServer>
  <incomingServer type="pop3"><hostname>pop.corp.test</hostname><port>110</port>
    <socketType>STARTTLS</socketType></incomingServer>
  <incomingServer type="exchange"><hostname>ews.corp.test</hostname><port>443</port>
    <socketType>SSL</socketType></incomingServer>
  <incomingServer type="imap"><hostname>old.corp.test</hostname><port>143</port>
    <socketType>plain</socketType></incomingServer>
  <incomingServer type="imap"><hostname>broken.corp.test</hostname><port>99999</port>
    <socketType>SSL</socketType></incomingServer>
  <incomingServer type="imap"><hostname>bad host;rm -rf.corp.test</hostname><port>993</port>
    <socketType>SSL</socketType></incomingServer>
  <outgoingServer type="smtp"><hostname>%EMAILLOCALPART%.smtp.corp.test.</hostname><port>587</port>
    <socketType>STARTTLS</socketType></outgoingServer>
</emailProvider></clientConfig>"""


def test_an_autoconfig_file_gives_its_servers_in_order_with_placeholders_filled():
    found = parse(CONFIG, "ann@corp.test", "https://autoconfig.corp.test/mail/config-v1.1.xml")
    assert [(c.protocol, c.host, c.port, c.tls) for c in found] == [
        ("imap", "imap.corp.test", 993, "implicit"),
        ("pop3", "pop.corp.test", 110, "starttls"),
        ("imap", "old.corp.test", 143, "none"),  # proposed to the probe, which drops it: no TLS
        ("smtp", "ann.smtp.corp.test", 587, "starttls"),
    ]
    assert {c.source for c in found} == {Source.AUTOCONFIG}


@pytest.mark.parametrize("document, reason", [
    (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><clientConfig>&e;</clientConfig>', "DTD"),
    (b"<clientConfig><emailProvider>", "not well-formed"),
    (b"<html><body>Not found</body></html>", "<html>"),
])
def test_a_file_that_is_not_a_plain_config_is_refused_with_the_reason(document, reason):
    with pytest.raises(NotAConfig, match=reason):
        parse(document, "ann@corp.test", "https://corp.test/")


@pytest.mark.parametrize("mx, provider", [
    ("corp-test.mail.protection.outlook.com.", "microsoft365"),
    ("aspmx.l.google.com", "google"),
    ("ALT1.ASPMX.L.GOOGLE.COM.", "google"),
    ("aspmx2.googlemail.com", "google"),
    ("mail.protection.outlook.com.evil.test", None),
    ("notgoogle.com", None),
    ("mx.corp.test", None),
])
def test_a_provider_is_recognised_by_its_mx_host_only(mx, provider):
    preset = preset_for(mx)
    assert (preset.oauth_provider.value if preset else None) == provider


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("::1", ("::1", 53)),
])
def test_the_dns_server_is_an_address_and_a_port(given, expected):
    assert parse_dns_server(given) == expected


@pytest.mark.parametrize("given", ["127.0.0.1:0", "127.0.0.1:http", ""])
def test_a_bad_dns_server_is_refused(given):
    with pytest.raises(InvalidInput, match="--dns-server"):
        parse_dns_server(given)
