"""The profile's processed folder (R28) over IMAP against the lab's Dovecot: a mailbox that deletes
after processing moves what it processed there instead, once its activities are committed."""

from __future__ import annotations

import pytest

from mbxtui.core.models import Profile
from tests.backends import query
from tests.integration.test_sync_incoming import (
    deliver, enable, imap, listed, message, queue_mailbox, server_message_ids, sync,
)

pytestmark = pytest.mark.servers


def _processed_folder(name: str, folder: str) -> None:
    Profile.update(processed_folder=folder).where(Profile.name == name).execute()


def test_imap_moves_processed_mail_to_the_profiles_folder_creating_it_once(org):
    org.profile("lab", verify_delivery=False)
    _processed_folder("lab", "Erledigt – Mbxtui")  # non-ASCII: modified UTF-7 on the wire
    [login] = org.lab.add_users(1, "imapmove")
    enable(org, queue_mailbox(org, login, delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "Move me", message_id="<move-1@lab.test>"))
    deliver(org, login, message("b@outside.test", login, "Me too", message_id="<move-2@lab.test>"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.recorded, cycled.deleted) == (True, 2, 2), cycled
    assert server_message_ids(org, login) == [], "the inbox is emptied"
    deliver(org, login, message("c@outside.test", login, "Later", message_id="<move-3@lab.test>"))
    assert [(m.ok, m.deleted) for m in sync(org).mailboxes] == [(True, 1)], "the folder, there now, is reused"
    with imap(org, login) as client:
        folder = [name for _, _, name in client.list_folders() if name.endswith("Mbxtui")]
        assert folder == ["Erledigt – Mbxtui"], client.list_folders()
        client.select_folder(folder[0], readonly=True)
        uids = client.search(["ALL"])
        moved = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        deleted_flags = client.get_flags(uids)
    ids = sorted(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip() for v in moved.values())
    assert ids == ["<move-1@lab.test>", "<move-2@lab.test>", "<move-3@lab.test>"]
    assert not any(b"\\Deleted" in flags for flags in deleted_flags.values())
    assert listed(org)["total"] == 3


def test_without_move_imap_copies_then_deletes_and_expunges(org):
    port = org.lab.imap_front_without("MOVE")
    org.profile("nomove", verify_delivery=False, incoming_port=port, incoming_tls="none")
    _processed_folder("nomove", "Processed")
    [login] = org.lab.add_users(1, "imapnomove")
    enable(org, queue_mailbox(org, login, profile="nomove", delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "Copy me", message_id="<copy-1@lab.test>"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.recorded, cycled.deleted) == (True, 1, 1), cycled
    assert server_message_ids(org, login) == []
    with imap(org, login) as client:
        client.select_folder("Processed", readonly=True)
        [uid] = client.search(["ALL"])
        assert b"\\Deleted" not in client.get_flags([uid])[uid]


def test_a_processed_folder_that_cannot_be_created_fails_the_cycle_before_anything_is_read(org):
    org.profile("lab", verify_delivery=False)
    _processed_folder("lab", "Processed/Mbxtui")  # this lab's Maildirs refuse "/" in a name
    [login] = org.lab.add_users(1, "imapbadfolder")
    enable(org, queue_mailbox(org, login, delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "Stay", message_id="<stay@lab.test>"))

    [cycled] = sync(org).mailboxes
    assert not cycled.ok and cycled.error_code == "INBOX_UNAVAILABLE", cycled
    assert "processed folder" in cycled.error and "create it on the server" in cycled.error
    assert server_message_ids(org, login) == ["<stay@lab.test>"]
    assert listed(org)["total"] == 0
    assert query(org.db_path, "SELECT count(*) FROM sync_checkpoint")[0][0] == 0


def test_a_mailbox_that_keeps_its_mail_ignores_the_processed_folder(org):
    org.profile("lab", verify_delivery=False)
    _processed_folder("lab", "Processed")
    [login] = org.lab.add_users(1, "imapkeep")
    enable(org, queue_mailbox(org, login))
    deliver(org, login, message("a@outside.test", login, "Keep", message_id="<keep@lab.test>"))

    assert [(m.ok, m.recorded, m.deleted) for m in sync(org).mailboxes] == [(True, 1, 0)]
    assert server_message_ids(org, login) == ["<keep@lab.test>"]
    with imap(org, login) as client:
        assert not client.folder_exists("Processed")
