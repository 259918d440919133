"""What a test, a cycle or a sending that could not run at all says: this machine's faults (out of
file descriptors, the keyring gone) get their own transient codes and a sentence saying what to do;
anything else is mbxtui's own (``INTERNAL_ERROR``)."""

from __future__ import annotations

import logging

from mbxtui.core.descriptors import limit_sentence, out_of_descriptors
from mbxtui.core.mailbox_check import rule_failure
from mbxtui.core.probes.base import ErrorCode, ProbeResult
from mbxtui.core.secrets import KeyringUnavailable

log = logging.getLogger(__name__)


def could_not_run(exc: BaseException, what: str, mailbox_id: int) -> ProbeResult:
    """The failure of a ``what`` ("test", "cycle", "sending") of the mailbox that raised ``exc``."""
    if out_of_descriptors(exc):
        log.warning("the %s of mailbox %s could not run: out of file descriptors", what, mailbox_id)
        return rule_failure(ErrorCode.TOO_MANY_OPEN_FILES, limit_sentence())
    if isinstance(exc, KeyringUnavailable):
        log.warning("the %s of mailbox %s could not run: %s", what, mailbox_id, exc)
        return rule_failure(ErrorCode.KEYRING_UNAVAILABLE, str(exc))
    log.exception("the %s of mailbox %s could not run", what, mailbox_id)
    return rule_failure(ErrorCode.INTERNAL_ERROR, f"the {what} could not run: {exc.__class__.__name__}: {exc}")
