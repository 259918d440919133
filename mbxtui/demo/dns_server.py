"""The demo's DNS server, so that ``mbxtui profile detect ADDRESS --dns-server 127.0.0.1:PORT`` finds
the sandbox's servers for the demo domain: RFC 6186 / RFC 8314 SRV records naming the sandbox's
ports (the only source of settings detection that carries a port: the autoconfig file is fetched
from port 443, which the demo cannot take), with ``localhost`` as their target, so that a profile
created from them works as it is.

UDP and TCP on the same port of 127.0.0.1, answering only for the demo domain and ``localhost``
(anything else: NXDOMAIN), built with dnspython, which the product already uses to ask."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TARGET = "localhost."
TTL = 60
MAX_MESSAGE = 4096
_PORT_ATTEMPTS = 50


def zone(domain: str, host: str, ports: dict[str, int]) -> dict[tuple[str, str], list[str]]:
    """(name, type) -> the records' text. ``ports``: imaps, pop3 (STLS), submission (STARTTLS) and
    smtps (implicit TLS); the services without a sandbox server are "not offered" (target ``.``)."""
    origin = domain.rstrip(".").lower()
    offered = {"_imaps._tcp": ports["imaps"], "_pop3._tcp": ports["pop3"],
               "_submissions._tcp": ports["smtps"], "_submission._tcp": ports["submission"]}
    records = {(f"{service}.{origin}.", "SRV"): [f"0 1 {port} {TARGET}"] for service, port in offered.items()}
    for service in ("_imap._tcp", "_pop3s._tcp"):
        records[(f"{service}.{origin}.", "SRV")] = ["0 0 0 ."]
    records[(TARGET, "A")] = [host]
    return records


class DnsAnswers:
    """Answers one query message (wire format) from the records of :func:`zone`."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.names = {name for name, _ in records}

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not a DNS message: no answer, as a resolver would drop it
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        if name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, kind) in self.records:
            response.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, kind,
                                                            self.records[(name, kind)]))
        return response.to_wire()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, answers: DnsAnswers, on_transport: Callable[[asyncio.BaseTransport], None]) -> None:
        self.answers = answers
        self.on_transport = on_transport
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.on_transport(transport)

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        reply = self.answers.answer(data[:MAX_MESSAGE])
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, address)


async def serve(answers: DnsAnswers, host: str,
                on_transport: Callable[[asyncio.BaseTransport], None]) -> tuple[int, asyncio.base_events.Server]:
    """Listen on one port of ``host`` for both UDP and TCP; returns the port and the TCP server."""
    loop = asyncio.get_running_loop()
    udp, tcp = _same_port_sockets(host)

    async def over_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        on_transport(writer.transport)
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10.0))[0]
                reply = answers.answer(await asyncio.wait_for(reader.readexactly(size), 10.0))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    await loop.create_datagram_endpoint(lambda: _Datagrams(answers, on_transport), sock=udp)
    server = await asyncio.start_server(over_tcp, sock=tcp)
    return udp.getsockname()[1], server


def _same_port_sockets(host: str) -> tuple[socket.socket, socket.socket]:
    for _ in range(_PORT_ATTEMPTS):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"no port of {host} was free for both UDP and TCP")
