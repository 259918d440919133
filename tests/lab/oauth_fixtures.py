"""The lab's HTTPS identity provider and its OAuth mail servers as pytest fixtures. A test module
imports the ones it uses by name:

    from tests.lab.oauth_fixtures import lab_certificates, provider  # noqa: F401  (fixtures)

``lab_certificates``: a CA and the provider's certificate for 127.0.0.1 (made once per module);
``module_provider``: a started ``OAuthProvider`` shared by a module's tests (each registers the clients
it uses), where stopping one per test would cost each up to a second (``shutdown`` polls at 0.5 s);
``provider``: a started ``OAuthProvider`` alone, per test, with the process's token caches emptied
before and after it, so that no token fetched from one test's provider serves the next;
``oauth_mail``: the provider with the Dovecot and SMTP servers that check its tokens
(tests/lab/oauth_mail.py), once per module, beside the session's ``mail_lab``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mbxtui.core.oauth import delegated, tokens

from .certs import LabCertificates, make_certificates
from .mail_lab import MailLab
from .oauth_mail import OAuthMail, start_oauth_mail
from .oauth_provider import OAuthProvider


@pytest.fixture(scope="module")
def lab_certificates(tmp_path_factory: pytest.TempPathFactory) -> LabCertificates:
    return make_certificates(tmp_path_factory.mktemp("oauth-certs"))


@pytest.fixture
def provider(lab_certificates: LabCertificates) -> Iterator[OAuthProvider]:
    started = OAuthProvider(lab_certificates).start()
    tokens.forget_tokens()
    delegated.forget_tokens()
    try:
        yield started
    finally:
        started.stop()
        tokens.forget_tokens()
        delegated.forget_tokens()


@pytest.fixture(scope="module")
def module_provider(lab_certificates: LabCertificates) -> Iterator[OAuthProvider]:
    started = OAuthProvider(lab_certificates).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def oauth_mail(mail_lab: MailLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthMail]:
    started = start_oauth_mail(mail_lab, tmp_path_factory.mktemp("oauth-mail"))
    try:
        yield started
    finally:
        started.stop()
