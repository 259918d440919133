"""Probing a candidate before it is proposed, with the protocol probes of core/probes: connect,
TLS as the candidate says (implicit or STARTTLS, the certificate verified against the system's
CAs or the CA file), then read which logins the server offers once encrypted. Nothing is sent
that carries a credential."""

from __future__ import annotations

import poplib
import time
from collections.abc import Mapping

from mbxtui.core.detect.lookup import MOST_ADDRESSES, Lookup, unreachable_at
from mbxtui.core.detect.model import Candidate, Tried, Verdict
from mbxtui.core.detect.presets import PASSWORD_MECHANISMS, TOKEN_MECHANISMS
from mbxtui.core.probes import imap, pop3, smtp
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, Step
from mbxtui.core.probes.session import ProbeSession

# Failures that say nothing about the server, only that it cannot be reached from here.
_UNREACHABLE = frozenset({ErrorCode.HOST_NOT_FOUND, ErrorCode.CONNECTION_REFUSED, ErrorCode.TIMEOUT,
                          ErrorCode.CONNECTION_RESET})
_NO_LOGIN = Credentials("none")


def probe(candidate: Candidate, lookup: Lookup, *, ca_file: str | None, timeout: float,
          reach_ports: Mapping[int, int]) -> Tried:
    """The verdict on one candidate. A provider's preset that cannot be reached from here is
    proposed all the same, marked as not probed; any other candidate must pass."""
    started = time.perf_counter()
    if candidate.tls == "none":
        return Tried(candidate, Verdict.DROPPED, f"{candidate.where} is offered without TLS: a password would "
                                                 "travel in clear")
    addresses = lookup.addresses(candidate.host)
    if not addresses:
        return _unreachable(candidate, f"{candidate.host} has no address in DNS", None, started)
    unreachable: dict[str, str] = {}  # address: why it could not be reached there
    for address in addresses[:MOST_ADDRESSES]:
        tried = _probe_at(candidate, address, ca_file=ca_file, timeout=timeout, reach_ports=reach_ports,
                          started=started)
        if isinstance(tried, Tried):
            return tried
        unreachable[address] = tried
    return _unreachable(candidate, unreachable_at(unreachable), addresses[0], started)


def _probe_at(candidate: Candidate, address: str, *, ca_file: str | None, timeout: float,
              reach_ports: Mapping[int, int], started: float) -> Tried | str:
    """The verdict at one of the host's addresses, or why it cannot be reached there."""
    port = reach_ports.get(candidate.port, candidate.port)
    endpoint = Endpoint(candidate.host, port, candidate.tls, timeout=timeout, ca_file=ca_file, address=address)
    session = ProbeSession(candidate.protocol, endpoint, _NO_LOGIN, login_required=False)
    offered: list[str] = []
    session.run(lambda: _CONVERSATIONS[candidate.protocol](session, offered))
    failure = session.result.failure
    if failure is not None:
        reason = failure.message.replace(f":{port}", f":{candidate.port}")  # the port as proposed
        if failure.code in _UNREACHABLE:
            return reason
        return Tried(candidate, Verdict.DROPPED, reason, address, seconds=time.perf_counter() - started)
    tls_detail = next((step.detail for step in session.result.steps if step.step == Step.TLS), "")
    mechanisms = tuple(dict.fromkeys(offered))
    usable = [m for m in mechanisms if m in PASSWORD_MECHANISMS | TOKEN_MECHANISMS]
    how = f"{candidate.tls} TLS ({tls_detail}), certificate verified"
    if not usable:
        reason = (f"{how}, but it offers no login this product uses (offers: {' '.join(mechanisms) or 'none'}; "
                  f"needs PLAIN{', USER' if candidate.protocol == 'pop3' else ''}, XOAUTH2 or OAUTHBEARER)")
        return Tried(candidate, Verdict.DROPPED, reason, address, tls_detail, mechanisms,
                     time.perf_counter() - started)
    return Tried(candidate, Verdict.KEPT, f"{how}; offers {' '.join(mechanisms)}", address, tls_detail,
                 mechanisms, time.perf_counter() - started)


def _unreachable(candidate: Candidate, why: str, address: str | None, started: float) -> Tried:
    seconds = time.perf_counter() - started
    if candidate.oauth_provider is not None:
        return Tried(candidate, Verdict.NOT_PROBED, f"not probed: unreachable from here ({why}); proposed as "
                                                    "the provider documents it", address, seconds=seconds)
    return Tried(candidate, Verdict.DROPPED, why, address, seconds=seconds)


def _imap(session: ProbeSession, offered: list[str]) -> None:
    client = imap.open_session(session)
    try:
        with session.step(Step.CHECK):
            capabilities = [c.decode("ascii", "replace").upper() for c in client.capabilities()]
        offered.extend(c[5:] for c in capabilities if c.startswith("AUTH="))
    finally:
        imap.close_session(client, session)


def _pop3(session: ProbeSession, offered: list[str]) -> None:
    client = pop3.open_session(session)
    try:
        with session.step(Step.CHECK):
            try:
                capabilities = client.capa()
            except poplib.error_proto:
                capabilities = {}  # CAPA is optional: such a server takes USER and PASS
                offered.append("USER")
        offered.extend(m.upper() for m in capabilities.get("SASL", []))
        if "USER" in capabilities:
            offered.append("USER")
    finally:
        pop3.close_session(client, session)


def _smtp(session: ProbeSession, offered: list[str]) -> None:
    client = smtp.open_session(session)
    try:
        offered.extend(client.esmtp_features.get("auth", "").upper().split())
    finally:
        smtp.close_session(client, session)


_CONVERSATIONS = {"imap": _imap, "pop3": _pop3, "smtp": _smtp}
