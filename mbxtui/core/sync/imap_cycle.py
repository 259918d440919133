"""One incoming cycle of one mailbox over IMAP (R24–R28): one UID SEARCH per window of UIDs past
the checkpoint, then the messages read a batch at a time (size, date, BODYSTRUCTURE, the header
block and one text part, each bounded; never a whole message), recorded up to ``COMMIT_MESSAGES``
at a time with the checkpoint in one transaction, and only then deleted when the mailbox deletes
after processing, or moved to the profile's processed folder."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mbxtui.core.errors import one_line
from mbxtui.core.models import utcnow
from mbxtui.core.probes import imap
from mbxtui.core.probes.base import ErrorCode, Step
from mbxtui.core.probes.session import ProbeSession, StepFailed
from mbxtui.core.probes.tls import renew_receive_budget
from mbxtui.core.sync import imap_fetch, store
from mbxtui.core.sync.cycle import FOLDER, CycleCounts, SyncTarget
from mbxtui.core.sync.messages import (
    MOST_HEADER_BYTES, MOST_TEXT_BYTES, decode_text, parse, read_structure, read_structure_text, unparseable,
)
from mbxtui.core.sync.routing import Party
from mbxtui.core.validation import stored_moment

# Messages per UID FETCH: their headers and texts at the most (64 KB each) fit one connection's
# receive budget (MOST_BYTES_RECEIVED, 1 MiB) per command.
BATCH = 12
# Messages per transaction (R24: with the checkpoint past them): at most this many, and at most this
# much header and text read for them, so that the parsed messages waiting for their commit stay small.
COMMIT_MESSAGES = 120
COMMIT_BYTES = 2 * 1024 * 1024
UID_WINDOW = 5000
_HEADER_ITEMS = ["RFC822.SIZE", "INTERNALDATE", "BODYSTRUCTURE", f"BODY.PEEK[HEADER]<0.{MOST_HEADER_BYTES}>"]


class _Recorder:
    """The messages read and not yet committed, and the UID the checkpoint moves to with them: one
    transaction each time enough has gathered and at the end of the cycle; what the mailbox
    deletes after processing is deleted after each commit (R28)."""

    def __init__(self, client: IMAPClient, session: ProbeSession, target: SyncTarget,
                 candidates: dict[str, Party] | None, progress: CycleCounts, now: datetime, uidvalidity: int,
                 saved: store.Checkpoint | None, moves_to: str | None) -> None:
        self.client, self.session, self.target, self.candidates = client, session, target, candidates
        self.progress, self.now, self.uidvalidity, self.moves_to = progress, now, uidvalidity, moves_to
        self.saved = saved
        self.covered = saved.last_uid if saved is not None and saved.uidvalidity == uidvalidity else 0
        self.items: list[store.Fetched] = []
        self.weight = 0
        self.pending = False  # R28: the last commit left UIDs to delete in the checkpoint

    def add(self, items: list[store.Fetched], weight: int, covered: int) -> None:
        """``items`` read, every message up to UID ``covered`` processed."""
        self.items.extend(items)
        self.weight += weight
        self.covered = covered
        if len(self.items) + BATCH > COMMIT_MESSAGES or self.weight >= COMMIT_BYTES:
            self.commit()

    def commit(self) -> None:
        saved = self.saved
        if saved is not None and saved == store.Checkpoint(self.uidvalidity, self.covered) and not self.items:
            return
        target = self.target
        written = store.record_batch(target.mailbox.id, FOLDER, self.uidvalidity, self.covered, self.items,
                                     target.own, self.candidates, self.now,
                                     deleting=target.delete_after_processing, holder=target.claimed_by)
        self.saved = store.Checkpoint(self.uidvalidity, self.covered)
        self.pending = bool(target.delete_after_processing and written.processed_uids)
        self.progress.messages += len(self.items)
        self.progress.recorded += written.recorded
        self.progress.unresolved += written.unresolved
        self.items, self.weight = [], 0
        if target.delete_after_processing and written.processed_uids:
            with self.session.step(Step.DELETE) as note:  # R28: after the commit above
                _delete(self.client, written.processed_uids, self.moves_to)
                self.progress.deleted += len(written.processed_uids)
                note.detail = (f"{len(written.processed_uids)} messages"
                               + (f" moved to {self.moves_to}" if self.moves_to else ""))

    def finish(self) -> None:
        """The last commit of the cycle, and once its messages are deleted, nothing left to delete."""
        self.commit()
        if self.pending:
            store.clear_delete_pending(self.target.mailbox.id, FOLDER, holder=self.target.claimed_by)
            self.pending = False


def converse(session: ProbeSession, target: SyncTarget, candidates: dict[str, Party] | None,
             progress: CycleCounts, now: datetime) -> None:
    client = imap.open_session(session)
    client.normalise_times = False
    try:
        with session.step(Step.OPEN_INBOX) as note:
            selected = client.select_folder(FOLDER, readonly=not target.delete_after_processing)
            uidvalidity = int(selected[b"UIDVALIDITY"])
            uid_next = int(selected.get(b"UIDNEXT") or 0) or None
            note.detail = f"{selected[b'EXISTS']} messages"
            moves_to = _processed_folder(client, session, target)
        # A new UIDVALIDITY renumbered the folder: read it again; Message-IDs keep it from duplicates.
        saved = target.checkpoint(FOLDER)
        recorder = _Recorder(client, session, target, candidates, progress, now, uidvalidity, saved, moves_to)
        if saved is not None and saved.delete_pending:
            _delete_left_behind(client, session, target, saved, uidvalidity, moves_to, progress)
        fetched_any = False
        while True:
            with session.step(Step.FETCH) as note:
                uids, reached = _next_window(client, session, recorder.covered, uid_next, target.reads_after)
                note.detail = f"{len(uids)} new messages up to UID {reached}"
            if reached == recorder.covered:  # nothing past the checkpoint
                break
            batches = [uids[start:start + BATCH] for start in range(0, len(uids), BATCH)]
            headers = None  # the next batch's headers, read with the texts of the one before
            for index, batch in enumerate(batches):
                if fetched_any and session.deadline.remaining() < session.endpoint.timeout / 2:
                    progress.more = True
                    recorder.finish()  # headers read ahead are not processed: the checkpoint stays before them
                    return
                fetched_any = True
                ahead = batches[index + 1] if index + 1 < len(batches) else None
                with session.step(Step.FETCH) as note:
                    items, weight, headers = _fetch(client, session, batch, target.reads_after, headers, ahead)
                    note.detail = f"{len(batch)} new messages up to UID {batch[-1]}"
                recorder.add(items, weight, batch[-1])  # no command is waiting for its answer: may delete
            recorder.add([], 0, reached)
        recorder.finish()
    finally:
        imap.close_session(client, session)


def _next_window(client: IMAPClient, session: ProbeSession, last_uid: int, uid_next: int | None,
                 reads_after: datetime) -> tuple[list[int], int]:
    """The UIDs to read after ``last_uid``, in order, and the UID the checkpoint may move to once
    they are processed: one UID SEARCH over a window of ``UID_WINDOW`` UIDs, so that its answer
    stays small in a folder of any size; an empty window still moves the checkpoint past it."""
    renew_receive_budget(session.connection)
    # SINCE compares dates in the server's time zone: a day earlier misses nothing, and _fetch
    # compares each INTERNALDATE with ``reads_after`` exactly.
    since = reads_after.date() - timedelta(days=1)
    if uid_next is None:  # the server did not say: one search to the end
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*", "SINCE", since])
                      if u > last_uid)[:UID_WINDOW]
        return uids, (uids[-1] if uids else last_uid)
    if last_uid + 1 >= uid_next:
        return [], last_uid
    window_end = min(last_uid + UID_WINDOW, uid_next - 1)
    uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:{window_end}", "SINCE", since])
                  if last_uid < u <= window_end)
    return uids, window_end


def _fetch(client: IMAPClient, session: ProbeSession, uids: list[int], reads_after: datetime,
           headers: dict[int, dict] | None, ahead: list[int] | None,
           ) -> tuple[list[store.Fetched], int, dict[int, dict] | None]:
    """The batch's messages received after ``reads_after``, parsed, how many bytes of header and
    text were read for them, and the headers of the batch ``ahead`` (None for none).

    The size, date, BODYSTRUCTURE and header block of ``uids`` (unless ``headers`` already holds
    them), then the text part of each in one command per distinct section, with the same items
    of ``ahead`` sent right after those commands (pipelined: read in the same round trip instead
    of a round trip of their own; 1 to 2 commands a batch to wait for instead of 2 to 3). Every
    command may receive the connection's whole budget (``BATCH`` headers or texts at their bounds
    fit in it); the answers are read before the caller records or deletes anything."""
    if headers is None:
        renew_receive_budget(session.connection)
        headers = imap_fetch.fetch(client, uids, _HEADER_ITEMS, read_structure_text)
    wanted: dict[int, tuple] = {}
    for uid in uids:
        answer = headers.get(uid)
        if answer is None:  # expunged meanwhile
            continue
        received_on = _utc(answer.get(b"INTERNALDATE"))
        if received_on < reads_after:
            continue
        wanted[uid] = (received_on, answer)
    sections: dict[str, list[int]] = defaultdict(list)
    structures = {}
    for uid, (_, answer) in wanted.items():
        structure = answer.get(imap_fetch.STRUCTURE)  # read from the answer's text, else imapclient's tuples
        structures[uid] = structure if structure is not None else read_structure(answer.get(b"BODYSTRUCTURE"))
        if structures[uid].text is not None:
            sections[structures[uid].text.section].append(uid)
    sent = [imap_fetch.send(client, section_uids, [f"BODY.PEEK[{section}]<0.{MOST_TEXT_BYTES}>"])
            for section, section_uids in sections.items()]
    if ahead:
        sent.append(imap_fetch.send(client, ahead, _HEADER_ITEMS))
    answered = imap_fetch.answers(client, sent, lambda left: renew_receive_budget(session.connection, left),
                                  read_structure_text)
    texts: dict[int, bytes] = {}
    for section, answer_of in zip(sections, answered):
        key = f"BODY[{section}]<0>".encode()
        for uid, answer in answer_of.items():
            texts[uid] = answer.get(key) or b""
    fetched = []
    weight = 0
    for uid, (received_on, answer) in wanted.items():
        header = answer.get(b"BODY[HEADER]<0>") or b""
        weight += len(header) + len(texts.get(uid, b""))
        size = int(answer.get(b"RFC822.SIZE") or 0)
        structure = structures[uid]
        if not header or header.isspace():
            message = unparseable(f"uid {uid} {received_on}".encode(), size, "the message has no headers")
        else:
            try:
                text = decode_text(texts.get(uid, b""), structure.text) if structure.text else ""
            except Exception:
                text = ""
            message = parse(header, structure, text, size)
        fetched.append(store.Fetched(uid, received_on, message))
    return fetched, weight, (answered[-1] if ahead else None)


def _delete_left_behind(client: IMAPClient, session: ProbeSession, target: SyncTarget, saved: store.Checkpoint,
                        uidvalidity: int, moves_to: str | None, progress: CycleCounts) -> None:
    """R28: what the last commit recorded as processed and a cycle cut short did not delete (stopped
    between the commit and the expunge) is deleted by the next one, exactly those UIDs; under a new
    UIDVALIDITY they name other messages, and a mailbox that no longer deletes keeps them: then
    they are only forgotten."""
    if target.delete_after_processing and saved.uidvalidity == uidvalidity:
        uids = list(saved.delete_pending)
        with session.step(Step.DELETE) as note:
            _delete(client, uids, moves_to)  # a UID already expunged is passed over by the server
            progress.deleted += len(uids)
            note.detail = f"{len(uids)} processed messages left behind"
    store.clear_delete_pending(target.mailbox.id, FOLDER, holder=target.claimed_by)


def _processed_folder(client: IMAPClient, session: ProbeSession, target: SyncTarget) -> str | None:
    """R28: the folder processed messages move to instead of being deleted, created when missing.
    Made sure of before anything is read, so that a folder that cannot be had fails the cycle
    before any batch is committed (after a commit, its messages would stay in the inbox)."""
    folder = (target.processed_folder or "").strip()
    if not target.delete_after_processing or not folder:
        return None
    if folder.upper() == FOLDER:
        raise StepFailed(ErrorCode.INBOX_UNAVAILABLE,
                         f"the profile's processed folder is {folder}, the folder being read: set another "
                         "processed folder, or none to delete processed messages")
    if client.folder_exists(folder):
        return folder
    try:
        client.create_folder(folder)
    except IMAPClientError as refused:
        if client.folder_exists(folder):  # made meanwhile by another client
            return folder
        said = one_line(refused)[:200]
        raise StepFailed(ErrorCode.INBOX_UNAVAILABLE,
                         f"the IMAP server at {session.context.where} refused to create the processed folder "
                         f"{folder!r} ({said}): create it on the server, or change the profile's processed "
                         "folder") from refused
    return folder


def _delete(client: IMAPClient, uids: list[int], moves_to: str | None) -> None:
    if moves_to is not None:
        if client.has_capability("MOVE"):
            client.move(uids, moves_to)  # UID MOVE: imapclient speaks in UIDs
            return
        client.copy(uids, moves_to)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def _utc(value: object) -> datetime:
    """An INTERNALDATE as stored; now when the server sent none, or one out of range once in UTC
    (the appending client sets it: "31-Dec-9999 23:30:00 -0100" failed every cycle of the mailbox)."""
    if isinstance(value, datetime):
        try:
            return stored_moment(value).replace(microsecond=0)
        except OverflowError:
            pass
    return utcnow()
