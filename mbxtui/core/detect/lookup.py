"""DNS for settings detection through dnspython: SRV, MX and the addresses of host names, asked of
one DNS server when given (``--dns-server``), else of this machine's resolver. Every query is
bounded by the timeout. A name without records is an empty answer; a DNS server that does not
answer ends the detection with a sentence (``DnsUnavailable``)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.resolver

from mbxtui.core import validation
from mbxtui.core.errors import InvalidInput, MbxError

DEFAULT_DNS_PORT = 53


class DnsUnavailable(MbxError):
    """The DNS server could not be asked: nothing can be detected without it."""


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # without the final dot; "." (not offered) is "."


def parse_dns_server(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IPv6 address as ``[ADDRESS]:PORT``) as an IP address and a port; a host
    name is looked up once here."""
    raw = validation.text("--dns-server", text, max_length=300, required=False)
    host, port_text = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    port = DEFAULT_DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidInput("--dns-server", f"{port_text!r} is not a port (1-65535): give HOST or HOST:PORT")
        port = int(port_text)
    if not host:
        raise InvalidInput("--dns-server", "is empty: give the DNS server as HOST or HOST:PORT")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput("--dns-server", f"cannot find the host {host!r} ({exc}): give the DNS server's "
                                           "IP address") from None
    return str(found[0][4][0]), port


# A host name with several addresses (IPv4 and IPv6, or a provider's pool) is tried at each in
# turn, as a mail client would, until one answers; three bounds the wait on a host that is down.
MOST_ADDRESSES = 3


def unreachable_at(reasons: dict[str, str]) -> str:
    """Why a host could not be reached, from why it could not be at each address tried."""
    distinct = set(reasons.values())
    if len(distinct) > 1:
        return "; ".join(f"at {address}: {reason}" for address, reason in reasons.items())
    reason = distinct.pop()
    return reason if len(reasons) == 1 else f"{reason} (the same at each of its addresses: {', '.join(reasons)})"


class Lookup:
    """The DNS questions of one detection. ``dns_server`` is ``(address, port)`` or None for the
    system's resolver (whose host names then also come from /etc/hosts)."""

    def __init__(self, dns_server: tuple[str, int] | None, timeout: float) -> None:
        self.dns_server = dns_server
        self.timeout = timeout
        if dns_server is not None:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns_server[0]]
            resolver.port = dns_server[1]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise DnsUnavailable("this machine has no DNS resolver configured (no nameserver in "
                                     "/etc/resolv.conf): give one with --dns-server HOST[:PORT]") from None
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        self._resolver = resolver

    @property
    def described(self) -> str:
        if self.dns_server is None:
            return "this machine's DNS servers"
        address, port = self.dns_server
        shown = f"[{address}]" if ":" in address else address
        return f"the DNS server {shown}:{port}"

    def srv(self, name: str) -> list[SrvRecord]:
        """The SRV records of ``name``, in the order to try them (lowest priority first, heavier
        weight first among equals)."""
        answer = self._ask(name, "SRV")
        records = [SrvRecord(r.priority, r.weight, r.port, r.target.to_text().rstrip(".") or ".")
                   for r in answer]
        return sorted(records, key=lambda r: (r.priority, -r.weight, r.target, r.port))

    def mx(self, domain: str) -> list[str]:
        """The domain's MX hosts, most preferred first."""
        answer = self._ask(domain, "MX")
        return [r.exchange.to_text().rstrip(".") for r in sorted(answer, key=lambda r: r.preference)]

    def addresses(self, host: str) -> list[str]:
        """The IP addresses of ``host`` (IPv4 first); an empty list when it has none."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if self.dns_server is None:
            return self._system_addresses(host)
        found = [r.address for r in self._ask(host, "A")]
        if not found:
            found = [r.address for r in self._ask(host, "AAAA")]
        return found

    def _ask(self, name: str, kind: str) -> list:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError):
            return []  # not a name DNS can hold: it has no records
        try:
            return list(self._resolver.resolve(qname, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DnsUnavailable(f"{self.described} did not answer within {self.timeout:g} s (asking for "
                                 f"the {kind} records of {name}): check that it is running and reachable, or "
                                 "give another with --dns-server HOST[:PORT]") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"{self.described} could not answer for the {kind} records of {name} "
                                 f"({_first_error(exc)}): check that it is running and reachable, or give "
                                 "another with --dns-server HOST[:PORT]") from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"asking {self.described} for the {kind} records of {name} failed ({exc}): "
                                 "check the name and the DNS server") from None

    def _system_addresses(self, host: str) -> list[str]:
        """``getaddrinfo`` (which reads /etc/hosts too) in a thread of its own: it cannot be
        interrupted, so the lookup stops waiting for it at the timeout."""
        outcome: dict[str, list[str]] = {}

        def look_up() -> None:
            try:
                entries = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                entries = []
            ordered = sorted(entries, key=lambda entry: entry[0] != socket.AF_INET)
            outcome["addresses"] = list(dict.fromkeys(str(entry[4][0]) for entry in ordered))

        thread = threading.Thread(target=look_up, name=f"resolve {host}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise DnsUnavailable(f"{self.described} did not answer within {self.timeout:g} s (looking up "
                                 f"{host}): check this machine's DNS settings, or give a DNS server with "
                                 "--dns-server HOST[:PORT]")
        return outcome["addresses"]


def _first_error(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    if errors:
        detail = errors[0]
        return str(detail[3]) if len(detail) > 3 else str(detail)
    return "no server answered"
