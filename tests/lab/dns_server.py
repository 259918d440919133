"""A DNS server on 127.0.0.1 (UDP, a free port) answering from a zone the test writes, through
dnslib: SRV, MX and address records for test domains whose servers are the lab's.

    with LabDnsServer('''
        detect.test.            60 IN MX  10 mx.detect.test.
        _imaps._tcp.detect.test. 60 IN SRV 0 1 10993 imap.detect.test.
        imap.detect.test.       60 IN A   127.0.0.1
    ''') as dns:
        ... --dns-server dns.address ...

A name not in the zone is NXDOMAIN; a name in it asked for a type it lacks is an empty answer.
``asked`` lists every (name, type) question received.
"""

from __future__ import annotations

import textwrap
import threading

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: str) -> None:
        self.records = RR.fromZone(textwrap.dedent(zone))
        self.asked: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name, kind = request.q.qname, request.q.qtype
        with self._lock:
            self.asked.append((str(name).rstrip(".").lower(), QTYPE[kind]))
        known = [rr for rr in self.records if rr.rname == name]
        for rr in known:
            if rr.rtype == kind:
                reply.add_answer(rr)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Silent(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-error,-data")


class LabDnsServer:
    def __init__(self, zone: str) -> None:
        self._resolver = _ZoneResolver(zone)
        self._server = DNSServer(self._resolver, address="127.0.0.1", port=0, logger=_Silent())
        self.port = self._server.server.server_address[1]
        self._server.start_thread()

    @property
    def address(self) -> str:
        """What ``--dns-server`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def asked(self) -> list[tuple[str, str]]:
        return list(self._resolver.asked)

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()

    def __enter__(self) -> LabDnsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
