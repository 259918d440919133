"""The session-wide mail lab fixture (exposed to the tests by tests/conftest.py)."""

from collections.abc import Iterator

import pytest

from .mail_lab import MailLab, start_lab


@pytest.fixture(scope="session")
def mail_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailLab]:
    """Dovecot and the SMTP servers, started once for the session on first use."""
    lab = start_lab(tmp_path_factory.mktemp("mail-lab"))
    try:
        yield lab
    finally:
        lab.stop()
