"""RFC 5034 section 4 against the sandbox's POP3 server, which holds a client to it as Exchange Online
does: an AUTH initial response that would make the command longer than 255 octets is sent after the
server's "+ ", so a real-length OAuth2 token logs in."""

from __future__ import annotations

import base64
import poplib
import ssl

import pytest

from mbxtui.core.probes import Credentials, Endpoint, pop3
from mbxtui.demo import CA_FILE_NAME, Demo, mailsystem, seed

# An Entra ID access token is a JWT of 1,500 to 2,500 characters.
REAL_LENGTH_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "x" * 1900 + ".signature-part"


def endpoint(demo: Demo) -> Endpoint:
    return Endpoint("127.0.0.1", demo.ports.pop3, "starttls", timeout=10, ca_file=str(demo.directory / CA_FILE_NAME))


def test_a_real_length_token_logs_in_with_its_response_after_the_servers_plus(demo: Demo,
                                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(mailsystem, "OAUTH2_TOKEN", REAL_LENGTH_TOKEN)
    user = seed.plan().groups[seed.BRANCH][0]

    result = pop3.probe(endpoint(demo), Credentials("oauth2", user, REAL_LENGTH_TOKEN))

    assert result.ok, result.failure
    assert (result.mechanism, result.steps[-1].step.value) == ("XOAUTH2", "open_inbox")


def test_the_sandbox_refuses_an_auth_command_longer_than_255_octets(demo: Demo):
    response = "user=nobody@example.test\x01auth=Bearer "
    fitting = base64.b64encode((response + "t" * (180 - len(response))).encode()).decode()  # 240 characters
    pop = poplib.POP3("127.0.0.1", demo.ports.pop3, timeout=5)
    try:
        pop.stls(ssl.create_default_context(cafile=str(demo.directory / CA_FILE_NAME)))
        with pytest.raises(poplib.error_proto, match="longer than 255 octets"):
            pop._shortcmd(f"AUTH XOAUTH2 {fitting}AA")  # 257 octets with its CRLF
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            pop._shortcmd(f"AUTH XOAUTH2 {fitting}")  # 255 octets: read, and the token refused
    finally:
        pop.close()
