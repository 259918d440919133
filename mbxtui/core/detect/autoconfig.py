"""The autoconfig file (Thunderbird's config-v1.1.xml): fetched over HTTPS with the certificate
verified (plain HTTP only as a last resort, with a warning), from the address its host name has
in the detection's DNS, and read into candidates.

The XML is read with the standard library's parser, whose expat (2.4.1 and later) refuses entity
expansion bombs and which never fetches external entities; on top of that a file holding a DTD is
refused outright (a configuration file has no use for one) and its size is bounded, so defusedxml
is not needed."""

from __future__ import annotations

import http.client
import socket
import ssl
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass

from mbxtui.core import validation
from mbxtui.core.detect.lookup import MOST_ADDRESSES, Lookup, unreachable_at
from mbxtui.core.detect.model import Candidate, Source
from mbxtui.core.detect.presets import AUTOCONFIG_URLS, HTTP_PORTS
from mbxtui.core.errors import InvalidInput
from mbxtui.core.probes.tls import Deadline, ssl_context

MOST_BYTES = 256 * 1024
_TLS_MODES = {"SSL": "implicit", "TLS": "implicit", "STARTTLS": "starttls", "PLAIN": "none"}
_SERVER_TYPES = {"incomingServer": ("imap", "pop3"), "outgoingServer": ("smtp",)}


@dataclass(frozen=True)
class Fetched:
    """One address asked: ``document`` when it answered with a file, else ``problem`` says why not."""

    url: str
    document: bytes | None = None
    problem: str = ""
    plain_http: bool = False


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the address the detection's DNS gave, the host name still sent (SNI, Host) and
    checked against the certificate."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext | None,
                 deadline: Deadline) -> None:
        super().__init__(host, port, timeout=deadline.socket_timeout(), context=context)
        self._address = address
        self._deadline = deadline
        self._tls = context is not None

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self._deadline.socket_timeout())
        self._deadline.guard(sock)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host) if self._tls else sock


def fetch_all(domain: str, lookup: Lookup, *, ca_file: str | None, timeout: float,
              reach_ports: Mapping[int, int]) -> list[Fetched]:
    """Ask the autoconfig addresses in order until one gives a file; every address asked is in
    the list, the last one holding the file if any did."""
    asked: list[Fetched] = []
    for scheme, host_template, path in AUTOCONFIG_URLS:
        host = host_template.format(domain=domain)
        fetched = _fetch(scheme, host, path, lookup, ca_file, timeout, reach_ports)
        asked.append(fetched)
        if fetched.document is not None:
            break
    return asked


def _fetch(scheme: str, host: str, path: str, lookup: Lookup, ca_file: str | None, timeout: float,
           reach_ports: Mapping[int, int]) -> Fetched:
    url = f"{scheme}://{host}{path}"
    plain = scheme == "http"
    addresses = lookup.addresses(host)
    if not addresses:
        return Fetched(url, problem=f"{host} has no address in DNS", plain_http=plain)
    unreachable: dict[str, str] = {}  # address: why it could not be reached there
    for address in addresses[:MOST_ADDRESSES]:
        fetched = _fetch_at(url, host, address, path, ca_file, timeout, reach_ports)
        if isinstance(fetched, Fetched):
            return fetched
        unreachable[address] = fetched
    return Fetched(url, problem=unreachable_at(unreachable), plain_http=plain)


def _fetch_at(url: str, host: str, address: str, path: str, ca_file: str | None, timeout: float,
              reach_ports: Mapping[int, int]) -> Fetched | str:
    """The file at one of the host's addresses, or why that address could not be reached."""
    plain = url.startswith("http:")
    port = HTTP_PORTS["http" if plain else "https"]
    context = None if plain else ssl_context(ca_file)
    try:
        with Deadline(timeout) as deadline:
            connection = _Connection(host, address, reach_ports.get(port, port), context, deadline)
            try:
                connection.request("GET", path, headers={"Accept": "application/xml, text/xml"})
                response = connection.getresponse()
                if response.status != 200:
                    redirect = " (redirects are not followed)" if 300 <= response.status < 400 else ""
                    return Fetched(url, problem=f"answered HTTP {response.status}{redirect}", plain_http=plain)
                document = response.read(MOST_BYTES + 1)
            finally:
                connection.close()
    except ssl.SSLCertVerificationError as exc:
        return Fetched(url, problem=f"its certificate was refused ({exc.verify_message})", plain_http=plain)
    except (ConnectionError, TimeoutError) as exc:  # not at this address: the next one is asked
        return _connection_problem(exc, timeout)
    except (OSError, http.client.HTTPException) as exc:
        return Fetched(url, problem=_connection_problem(exc, timeout), plain_http=plain)
    if len(document) > MOST_BYTES:
        return Fetched(url, problem=f"the file is larger than {MOST_BYTES // 1024} KiB", plain_http=plain)
    return Fetched(url, document=document, plain_http=plain)


def _connection_problem(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or exc})"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"could not be read ({text})"


class NotAConfig(ValueError):
    """The file is not a config-v1.1 document the detection can read."""


def parse(document: bytes, email: str, origin: str) -> list[Candidate]:
    """The servers the file names, in its order, with its placeholders filled for ``email``."""
    head = document[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in document.upper():
        raise NotAConfig("it holds a DTD, which a configuration file never needs")
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        raise NotAConfig(f"it is not well-formed XML ({exc})") from None
    if root.tag != "clientConfig":
        raise NotAConfig(f"its root element is <{root.tag}>, not <clientConfig>")
    local, _, domain = email.partition("@")
    fill = {"%EMAILADDRESS%": email, "%EMAILLOCALPART%": local, "%EMAILDOMAIN%": domain}
    candidates = []
    for provider in root.findall("emailProvider"):
        for element_name, protocols in _SERVER_TYPES.items():
            for server in provider.findall(element_name):
                candidate = _candidate(server, protocols, fill, origin)
                if candidate is not None:
                    candidates.append(candidate)
    return candidates


def _candidate(server: ElementTree.Element, protocols: tuple[str, ...], fill: dict[str, str],
               origin: str) -> Candidate | None:
    protocol = (server.get("type") or "").lower()
    host = (server.findtext("hostname") or "").strip()
    port = (server.findtext("port") or "").strip()
    tls = _TLS_MODES.get((server.findtext("socketType") or "").strip().upper())
    for placeholder, value in fill.items():
        host = host.replace(placeholder, value)
    if protocol not in protocols or not port.isdigit() or not 1 <= int(port) <= 65535 or tls is None:
        return None  # an Exchange or a malformed entry: nothing this product can use
    try:
        host = validation.host("hostname", host)
    except InvalidInput:
        return None
    return Candidate(protocol, host, int(port), tls, Source.AUTOCONFIG, origin)
