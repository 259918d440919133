"""Certificates for the lab: a trusted CA, its server certificates, and an unrelated CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

WRONG_HOSTNAME = "other.example.test"
# Settings detection's tests name the lab's servers by host names under this domain (their DNS
# server answers 127.0.0.1 for them), so the lab's certificate covers them too.
DETECTION_DOMAIN = "detect.test"


@dataclass(frozen=True)
class LabCertificates:
    ca_file: Path
    wrong_ca_file: Path
    server_cert_file: Path  # for 127.0.0.1, localhost and DETECTION_DOMAIN's names, with its chain
    server_key_file: Path
    wrong_host_cert_file: Path  # for WRONG_HOSTNAME only, signed by the same CA
    wrong_host_key_file: Path

    def server_context(self) -> ssl.SSLContext:
        return _server_context(self.server_cert_file, self.server_key_file)

    def wrong_host_server_context(self) -> ssl.SSLContext:
        return _server_context(self.wrong_host_cert_file, self.wrong_host_key_file)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_certificates(directory: Path) -> LabCertificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="mbxtui test lab CA")
    server = ca.issue_cert("127.0.0.1", "localhost", DETECTION_DOMAIN, f"*.{DETECTION_DOMAIN}")
    wrong_host = ca.issue_cert(WRONG_HOSTNAME)
    unrelated_ca = trustme.CA(organization_name="mbxtui unrelated CA")

    certificates = LabCertificates(
        ca_file=directory / "ca.pem",
        wrong_ca_file=directory / "wrong-ca.pem",
        server_cert_file=directory / "server.pem",
        server_key_file=directory / "server.key",
        wrong_host_cert_file=directory / "wrong-host.pem",
        wrong_host_key_file=directory / "wrong-host.key",
    )
    ca.cert_pem.write_to_path(str(certificates.ca_file))
    unrelated_ca.cert_pem.write_to_path(str(certificates.wrong_ca_file))
    for cert, cert_file, key_file in (
        (server, certificates.server_cert_file, certificates.server_key_file),
        (wrong_host, certificates.wrong_host_cert_file, certificates.wrong_host_key_file),
    ):
        cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_file))
    return certificates


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
