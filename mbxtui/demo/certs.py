"""The demo's certificates: a certificate authority of its own, which the demo profiles trust
through their CA file, and the "legacy" CA that signs the certificate of the server whose
certificate the profiles do not trust (its PEM is written too: setting it as the profile's CA file
is how that failure is fixed)."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

CA_FILE_NAME = "demo-ca.pem"
LEGACY_CA_FILE_NAME = "legacy-ca.pem"
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class DemoCertificates:
    ca_file: Path  # the demo CA, in PEM: what the demo profiles set as their CA file
    legacy_ca_file: Path  # the legacy CA, in PEM: no profile trusts it at first
    server_context: ssl.SSLContext  # a certificate for SERVER_NAMES signed by the demo CA
    untrusted_server_context: ssl.SSLContext  # the same names, signed by the legacy CA


def make_certificates(directory: Path) -> DemoCertificates:
    """Make both CAs and their server certificates; write both CAs to ``directory``.

    New keys every time: the profiles refer to the CA file by path, so they follow."""
    demo_ca = trustme.CA(organization_name="Fernhill Logistics demo CA")
    legacy_ca = trustme.CA(organization_name="Fernhill legacy systems CA")
    certificates = DemoCertificates(
        ca_file=directory / CA_FILE_NAME,
        legacy_ca_file=directory / LEGACY_CA_FILE_NAME,
        server_context=_server_context(demo_ca.issue_cert(*SERVER_NAMES)),
        untrusted_server_context=_server_context(legacy_ca.issue_cert(*SERVER_NAMES)),
    )
    _write_atomically(certificates.ca_file, demo_ca.cert_pem.bytes())
    _write_atomically(certificates.legacy_ca_file, legacy_ca.cert_pem.bytes())
    return certificates


def _server_context(certificate: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return context


def _write_atomically(path: Path, content: bytes) -> None:
    """A running console may be reading the file: replace it whole, never half written."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
