"""One incoming cycle of one mailbox over POP3 (R24–R28): list the maildrop (LIST, UIDL), read the
header block of each message not yet seen (``TOP n 0``), then for each one received after the
mailbox's process-email-received-after its headers and first body lines (``TOP n L``), each bounded
like IMAP's fetch; never ``RETR``, so a message is never read whole. Each batch is recorded with the
keys of the messages it saw in one transaction; only then are the processed ones marked for
deletion (``DELE``), and the ``QUIT`` that ends the session makes the server delete them (R28).

The key of a message is its UIDL. A server without UIDL (it answers -ERR) is read by Message-ID:
the Message-IDs seen are the keys, so nothing is recorded twice (R24). Its header blocks are read
again only when the maildrop changed other than by new mail arriving (``_known_head``): a cycle with
nothing new costs one ``TOP``, not one per message.

Each key seen is kept with whether its message was processed or passed over (received before the
reading date, tracked for nobody): a processed message still on the server when the next cycle
starts (the cycle that processed it was cut short between its commit and its QUIT) is deleted then,
when the mailbox deletes after processing (R28); one passed over stays."""

from __future__ import annotations

import hashlib
import poplib
from collections.abc import Callable, Iterator
from datetime import datetime

from mbxtui.core.probes import pop3
from mbxtui.core.probes.base import Step
from mbxtui.core.probes.session import ProbeSession
from mbxtui.core.probes.tls import TooMuchData, renew_receive_budget
from mbxtui.core.sync import store
from mbxtui.core.sync.cycle import FOLDER, CycleCounts, SyncTarget
from mbxtui.core.sync.messages import (
    MOST_HEADER_BYTES, MOST_TEXT_BYTES, Structure, parse, received_date, top_structure, unparseable,
)
from mbxtui.core.sync.routing import Party

BATCH = 12  # messages recorded per transaction, as over IMAP
MOST_EXAMINED = 200  # header blocks read per transaction: a maildrop of old mail still advances
# Body lines asked for: enough for MOST_TEXT_BYTES of short lines; what comes beyond that is
# received and dropped (a server answers TOP with whole lines, however long).
BODY_LINES = MOST_TEXT_BYTES // 40
LONGEST_LINE = 8192  # a longer line is kept cut to this (a 1 MB header line is not kept whole)
_LIST_LINE = 12 + 1 + 20 + 2  # "n size": a message number and a size in octets
_UIDL_LINE = 12 + 1 + 70 + 2  # RFC 1939: a UIDL has 1 to 70 characters
_SLACK = 64 * 1024
_RENEW_EVERY = 512 * 1024
# Without UIDL, the checkpoint of the maildrop's head that a cycle read (see _known_head): the
# count in ``last_uid``, a digest of its listing in ``uidvalidity``; no IMAP folder has this name.
LISTING = "POP3 listing without UIDL"


def converse(session: ProbeSession, target: SyncTarget, candidates: dict[str, Party] | None,
             progress: CycleCounts, now: datetime) -> None:
    pop = pop3.open_session(session)
    drop = _Maildrop(pop, session)
    try:
        with session.step(Step.OPEN_INBOX) as note:
            count, _ = pop.stat()
            drop.list(count)
            note.detail = f"{count} messages"
        with session.step(Step.FETCH) as note:
            uidls = drop.uidls(count)
            note.detail = "by UIDL" if uidls is not None else "the server has no UIDL: by Message-ID"
        seen = store.seen_uidls(target.mailbox.id)
        if uidls is not None:
            store.forget_uidls(target.mailbox.id, set(seen) - set(uidls.values()), holder=target.claimed_by)
            waiting = [n for n in sorted(drop.sizes) if uidls.get(n) not in seen]
            if target.delete_after_processing:
                drop.delete_left_behind([n for n in sorted(drop.sizes) if seen.get(uidls.get(n))])
            _read_all(drop, target, candidates, progress, now, waiting, uidls, seen)
        else:
            known = _known_head(drop, target, count)
            read = _read_all(drop, target, candidates, progress, now, [n for n in sorted(drop.sizes) if n > known],
                             None, seen)
            _after_reading_by_message_id(target, drop.sizes, known, read, set(seen), now, whole=not progress.more)
        if drop.marked:
            with session.step(Step.DELETE) as note:  # R28: QUIT makes the server delete them
                pop.quit()
                drop.said_goodbye = True
                progress.deleted += drop.marked
                note.detail = f"{drop.marked} messages"
    finally:
        if not drop.said_goodbye:
            pop3.close_session(pop, session)


def _read_all(drop: _Maildrop, target: SyncTarget, candidates: dict[str, Party] | None, progress: CycleCounts,
              now: datetime, waiting: list[int], uidls: dict[int, str] | None,
              seen: dict[str, bool]) -> dict[int, str]:
    """Read the ``waiting`` messages a batch at a time until none is left or the time is half gone.
    ``seen``: the keys seen before, each with whether its message was processed. Returns the key
    of each message read, by its number."""
    session = drop.session
    read: dict[int, str] = {}
    position = 0
    while position < len(waiting):
        if position and session.deadline.remaining() < session.endpoint.timeout / 2:
            progress.more = True
            return read
        items: list[store.Fetched] = []
        keys: list[str] = []
        left_behind: list[int] = []  # without UIDL: processed before, not deleted (R28)
        keys_of: dict[int, str] = {}
        with session.step(Step.FETCH) as note:
            examined = 0
            while position < len(waiting) and len(items) < BATCH and examined < MOST_EXAMINED:
                number = waiting[position]
                position += 1
                examined += 1
                item, key = drop.read(number, uidls.get(number) if uidls is not None else None,
                                      target.reads_after, now, lambda key: key in seen or key in keys)
                read[number] = key
                if key in seen or key in keys:  # without UIDL: read before, by its Message-ID
                    if seen.get(key) and target.delete_after_processing:
                        left_behind.append(number)
                    continue
                keys.append(key)
                if item is not None:
                    items.append(item)
                    keys_of[number] = key
            note.detail = f"{len(items)} new messages of {examined} read"
        drop.delete_left_behind(left_behind)
        if not keys:  # without UIDL: all of them read in an earlier cycle
            continue
        # Should this fail, the QUIT that ends the session still deletes the batches committed before.
        written = store.record_pop3_batch(target.mailbox.id, FOLDER, items, keys, target.own, candidates, now,
                                          keys_of=keys_of, holder=target.claimed_by)
        processed = {keys_of[number] for number in written.processed_uids}
        seen.update((key, key in processed) for key in keys)
        progress.messages += len(items)
        progress.recorded += written.recorded
        progress.unresolved += written.unresolved
        if target.delete_after_processing and written.processed_uids:
            with session.step(Step.DELETE) as note:  # R28: after the commit above
                for number in written.processed_uids:
                    drop.pop.dele(number)
                drop.marked += len(written.processed_uids)
                note.detail = f"{len(written.processed_uids)} messages marked"
    return read


def _known_head(drop: _Maildrop, target: SyncTarget, count: int) -> int:
    """Without UIDL: how many messages at the head of the maildrop an earlier cycle read to the end
    and that are still there (0: read every header again). Mail is only appended to a maildrop, so
    while the sizes LIST gives for the first N messages and the Message-ID of the Nth are those the
    checkpoint holds, none of them was deleted and they need not be read again: one ``TOP`` where
    there were N. A mailbox that deletes after processing reads all (its maildrop stays short)."""
    if target.delete_after_processing:
        return 0
    saved = target.checkpoint(LISTING)
    if saved is None or not 0 < saved.last_uid <= count:
        return 0
    with drop.session.step(Step.FETCH) as note:
        last_key = drop.key_of(saved.last_uid)
        known = saved.last_uid if _listing_digest(drop.sizes, saved.last_uid, last_key) == saved.uidvalidity else 0
        note.detail = f"the first {known} messages read before" if known else "the maildrop changed: read every header"
    return known


def _after_reading_by_message_id(target: SyncTarget, sizes: dict[int, int], known: int, read: dict[int, str],
                                 seen: set[str], now: datetime, *, whole: bool) -> None:
    """Without UIDL, after reading the messages past the known head (``read``: in order, each
    batch committed; ``whole``: to the end of the maildrop): keep the new head for ``_known_head``,
    so that a maildrop too large for one cycle is read on from there by the next; and once every
    header was read, forget the keys of messages gone."""
    if whole and not known:
        store.forget_uidls(target.mailbox.id, seen - set(read.values()), holder=target.claimed_by)
    last = max(read, default=0)
    if last > known and not target.delete_after_processing:
        store.save_checkpoint(target.mailbox.id, LISTING, _listing_digest(sizes, last, read[last]), last, now,
                              holder=target.claimed_by)


def _listing_digest(sizes: dict[int, int], count: int, last_key: str) -> int:
    """63 bits of the sizes of messages 1..count and the key of the last, as a checkpoint keeps them."""
    listing = ",".join(str(sizes.get(number, 0)) for number in range(1, count + 1))
    return int.from_bytes(hashlib.blake2b(f"{listing};{last_key}".encode(), digest_size=8).digest(), "big") >> 1


class _Maildrop:
    """The POP3 conversation's reading: multi-line answers read line by line within bounds (poplib
    refuses a line over 2 KB, and would keep a whole answer in memory)."""

    def __init__(self, pop: poplib.POP3, session: ProbeSession) -> None:
        self.pop = pop
        self.session = session
        self.sizes: dict[int, int] = {}
        self.marked = 0  # DELE sent: deleted when the session ends with QUIT
        self.said_goodbye = False

    def delete_left_behind(self, numbers: list[int]) -> None:
        """R28: messages a cycle cut short (a crash, a connection lost before QUIT) processed and
        committed but did not delete: marked now, deleted by this session's QUIT."""
        if not numbers:
            return
        with self.session.step(Step.DELETE) as note:
            for number in numbers:
                self.pop.dele(number)
            self.marked += len(numbers)
            note.detail = f"{len(numbers)} processed messages left behind"

    def list(self, count: int) -> None:
        for line, _ in self._answer("LIST", count * _LIST_LINE + _SLACK):
            words = line.split()
            if len(words) >= 2 and words[0].isdigit():
                self.sizes[int(words[0])] = int(words[1]) if words[1].isdigit() else 0

    def uidls(self, count: int) -> dict[int, str] | None:
        """Message number -> UIDL, or None when the server has no UIDL."""
        try:
            lines = list(self._answer("UIDL", count * _UIDL_LINE + _SLACK))
        except poplib.error_proto as refused:
            if isinstance(refused.args[0], bytes) and refused.args[0].startswith(b"-ERR"):
                return None
            raise
        found = {}
        for line, _ in lines:
            words = line.decode("ascii", "replace").split()
            if len(words) >= 2 and words[0].isdigit():
                found[int(words[0])] = words[1]
        return found

    def key_of(self, number: int) -> str:
        """The key of a message on a server without UIDL, as ``read`` finds it (its header block)."""
        return self.read(number, None, datetime.max, datetime.min)[1]

    def read(self, number: int, uidl: str | None, reads_after: datetime, now: datetime,
             known: Callable[[str], bool] = lambda key: False) -> tuple[store.Fetched | None, str]:
        """The message as recorded (None when received before ``reads_after``, or when its key is
        ``known``: then its body lines are not read) and its key: its UIDL, or without one its
        Message-ID (a digest of what was read when it has no headers)."""
        size = self.sizes.get(number, 0)
        header, _, _ = self._top(number, 0, size)
        if not header.strip():
            _, body, _ = self._top(number, BODY_LINES, size)
            identity = f"uidl {uidl}".encode() if uidl is not None else b"top " + body
            message = unparseable(identity, size, "the message has no headers")
            return store.Fetched(number, now, message), uidl or message.message_id
        received_on = received_date(header) or now
        if uidl is None:
            key = parse(header, Structure(None, ()), "", size).message_id
        else:
            key = uidl
        if received_on < reads_after or known(key):
            return None, key
        header, body, complete = self._top(number, BODY_LINES, size)
        structure, text = top_structure(header, body, size, complete)
        return store.Fetched(number, received_on, parse(header, structure, text, size)), key

    def _top(self, number: int, lines: int, size: int) -> tuple[bytes, bytes, bool]:
        """The header block and the body lines kept (each within its bound) and whether they are
        the whole message."""
        header, body = bytearray(), bytearray()
        in_header, dropped = True, False
        for line, cut in self._answer(f"TOP {number} {lines}", size + _SLACK):
            if in_header and not line and not cut:
                in_header = False
                continue
            kept = header if in_header else body
            bound = MOST_HEADER_BYTES if in_header else MOST_TEXT_BYTES
            if len(kept) + len(line) + 2 <= bound:
                kept += line + b"\r\n"
            else:
                dropped = True
            dropped = dropped or cut
        complete = not dropped and len(header) + 2 + len(body) >= size
        return bytes(header), bytes(body), complete

    def _answer(self, command: str, most: int) -> Iterator[tuple[bytes, bool]]:
        """Each line of a multi-line answer (dot-unstuffed, without its line end, cut to
        ``LONGEST_LINE``) and whether it was cut. Receives at most ``most`` octets; more is a
        protocol error. Raises ``poplib.error_proto`` for -ERR."""
        renew_receive_budget(self.session.connection)
        self.pop._shortcmd(command)
        received = renewed_at = 0
        while True:
            line = first = self._chunk()
            received += len(line)
            while not line.endswith(b"\n"):
                if received > most:
                    break
                line = self._chunk()
                received += len(line)
            if received > most:
                raise TooMuchData(f"sent more than {most // 1024} KiB in answer to {command.split()[0]}")
            if received - renewed_at > _RENEW_EVERY:
                renew_receive_budget(self.session.connection)
                renewed_at = received
            cut = line is not first
            first = first.rstrip(b"\r\n")
            if not cut and first == b".":
                return
            yield (first[1:] if first.startswith(b"..") else first), cut

    def _chunk(self) -> bytes:
        data = self.pop.file.readline(LONGEST_LINE)
        if not data:
            raise poplib.error_proto("-ERR EOF")  # what poplib itself raises when the connection ends
        return data
