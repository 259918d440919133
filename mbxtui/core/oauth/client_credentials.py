"""The client credentials a profile proves itself with to its OAuth provider, as ``profile
set-oauth`` reads them once (a secret, a PEM file, a service account's key file) and as they are
kept in the keyring: a client secret as it is, a certificate and a key file as compact JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mbxtui.core.enums import OAuthCredential
from mbxtui.core.errors import InvalidInput

MAX_FILE = 64 * 1024
_SERVICE_ACCOUNT_KEYS = ("client_email", "private_key", "token_uri")


@dataclass(frozen=True)
class CertificateCredential:
    private_key: str  # PEM, unencrypted
    certificate: str  # PEM
    thumbprint: str  # SHA-1 of the certificate's DER, hex: how Microsoft names a certificate


def certificate_from_pem(option: str, data: bytes) -> str:
    """A PEM file holding a private key and its certificate, as kept in the keyring."""
    if len(data) > MAX_FILE:
        raise InvalidInput(option, f"the file is larger than {MAX_FILE // 1024} KB: give the PEM file of the "
                                   "app's private key and certificate")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidInput(option, "the private key is encrypted: give it without a passphrase "
                                   "(openssl pkey -in KEY.pem -out PLAIN.pem)") from None
    except ValueError:
        raise InvalidInput(option, "the file holds no PEM private key: give one PEM file with the app's private "
                                   "key and its certificate") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(option, "the private key is not an RSA key: app certificates sign with RS256, so "
                                   "make the certificate with an RSA key (2048 bits or more)")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InvalidInput(option, "the file holds no PEM certificate: append the app's certificate to its "
                                   "private key") from None
    wanted = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    matching = [cert for cert in certificates
                if cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo) == wanted]
    if not matching:
        raise InvalidInput(option, "no certificate in the file matches its private key: give the certificate "
                                   "uploaded to the app registration with its own key")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    cert_pem = matching[0].public_bytes(serialization.Encoding.PEM).decode("ascii")
    return json.dumps({"private_key": key_pem, "certificate": cert_pem}, separators=(",", ":"))


def certificate_credential(stored: str) -> CertificateCredential:
    held = json.loads(stored)
    der = x509.load_pem_x509_certificate(held["certificate"].encode("ascii")).public_bytes(serialization.Encoding.DER)
    return CertificateCredential(held["private_key"], held["certificate"], hashlib.sha1(der).hexdigest())


def service_account_from_json(option: str, data: bytes) -> str:
    """A Google service account's JSON key file, as kept in the keyring."""
    if len(data) > MAX_FILE:
        raise InvalidInput(option, f"the file is larger than {MAX_FILE // 1024} KB: give the service account's "
                                   "JSON key file")
    try:
        info: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(option, "the file is not JSON: give the service account's key file as Google "
                                   "Cloud downloads it") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise InvalidInput(option, "the file is not a service account key (its type is not service_account)")
    missing = [key for key in _SERVICE_ACCOUNT_KEYS if not isinstance(info.get(key), str) or not info[key]]
    if missing:
        raise InvalidInput(option, f"the key file has no {missing[0]}: download a new key for the service account")
    if urlsplit(info["token_uri"]).scheme != "https":
        raise InvalidInput(option, "the key file's token_uri is not an https:// URL")
    try:
        serialization.load_pem_private_key(info["private_key"].encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidInput(option, "the key file's private_key is not a PEM private key") from None
    return json.dumps(info, separators=(",", ":"))


KINDS = tuple(OAuthCredential)
