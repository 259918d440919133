"""CSV import of users and queues: every row or none, every bad row reported with its line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mbxtui.core.errors import InvalidRows, MbxError, PermissionDenied
from mbxtui.core.models import AuditEntry, database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import imports, users
from tests.backends import ON_POSTGRES
from tests.core.conftest import Actors
from tests.core.support import count, mailbox, snapshot


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(content: str | bytes, name: str = "import.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path
    return write


def test_users_are_imported_each_with_one_mailbox_carrying_the_defaults(admin: Actor, default_profile, write_csv):
    path = write_csv("name,email\nAnn Archer,Ann@Corp.test\n\n\"Bob, the builder\",bob@corp.test\nCat,cat@corp.test\n")
    assert imports.import_csv(admin, "users", path) == {"imported": 3, "kind": "users"}
    assert count("user") == 3 and count("mailbox") == 3
    bob = mailbox("bob@corp.test")
    assert bob["name"] == "Bob, the builder"
    assert bob["profile_name"] == "imap" and bob["regarding"] == "user" and bob["approval"] == "pending"
    assert (bob["incoming_method"], bob["outgoing_method"], bob["act_method"]) == (
        "server_side_sync", "server_side_sync", "none")
    assert bob["owner_id"] == bob["user_id"] is not None
    assert mailbox("ann@corp.test")["name"] == "Ann Archer"
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (entry.action, entry.record_count, entry.login) == ("user.import", 3, "alice")
    assert entry.records.count() == 3


def test_queues_are_imported_with_their_owners(admin: Actor, default_profile, write_csv):
    users.add_user(admin, "Ann", "ann@corp.test")
    path = write_csv("\ufeffName , EMAIL,Owner\nSales,sales@corp.test,ANN@corp.test\nHelp,help@corp.test,ann@corp.test\n")
    assert imports.import_csv(admin, "queues", path)["imported"] == 2
    sales = mailbox("sales@corp.test")
    assert sales["regarding"] == "queue" and sales["queue_id"] is not None
    assert sales["owner_id"] == mailbox("ann@corp.test")["user_id"]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_imported(admin: Actor, write_csv):
    users.add_user(admin, "Existing", "existing@corp.test")
    path = write_csv(
        "name,email\n"
        "Good,good@corp.test\n"           # line 2
        "Bad address,not-an-address\n"    # line 3
        ",noname@corp.test\n"              # line 4
        "Twice,twice@corp.test\n"         # line 5
        "Again,TWICE@corp.test\n"         # line 6
        "Old,existing@corp.test\n"        # line 7
        "Too,many,fields\n"               # line 8
        "Good too,good2@corp.test\n"      # line 9
    )
    before = snapshot()
    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)
    problems = dict(refused.value.problems)
    assert sorted(problems) == [3, 4, 6, 7, 8]
    assert problems[3].startswith("email: 'not-an-address' is not a valid email address")
    assert problems[4] == "name: is required"
    assert problems[6] == "email: twice@corp.test is also on line 5"
    assert problems[7] == "email: a user with email existing@corp.test already exists"
    assert problems[8] == "has 3 fields, expected 2"
    message = str(refused.value)
    assert message.startswith("import of import.csv refused, nothing imported: 5 bad row(s): line 3: ")
    assert "line 8: has 3 fields" in message
    assert snapshot() == before


def test_addresses_of_one_domain_are_each_checked_as_the_first_was(admin: Actor, write_csv):
    # A refused domain is refused again on every line with the same words, a good one does not
    # pass a bad part before the @, and a quoted part or a display name is named as such.
    path = write_csv("name,email\nA,a@bad_domain.test\nB,b@bad_domain.test\nC,c@Corp.test\nD,d..d@corp.test\n"
                     'E,"""e f""@corp.test"\nF,Fay <f@corp.test>\nG,g@h@corp.test\n')
    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)
    problems = dict(refused.value.problems)
    assert sorted(problems) == [2, 3, 5, 6, 7, 8]
    assert problems[2] == problems[3].replace("'b@", "'a@") and "after the @-sign" in problems[2]
    assert problems[5].startswith("email: 'd..d@corp.test' is not a valid email address")
    assert problems[6].endswith("Quoting the part before the @-sign is not allowed here.")
    assert problems[7].endswith("A display name and angle brackets around the email address are not permitted here.")
    assert problems[8].endswith("The part after the @-sign contains invalid characters: '@'.")


def test_a_queue_row_with_an_unknown_owner_is_reported(admin: Actor, write_csv):
    path = write_csv("name,email,owner\nSales,sales@corp.test,ghost@corp.test\n")
    with pytest.raises(InvalidRows, match="line 2: owner: no user with email ghost@corp.test"):
        imports.import_csv(admin, "queues", path)
    assert count("queue") == 0


def test_an_address_already_used_by_a_mailbox_is_reported(admin: Actor, write_csv):
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_queue(admin, "Sales", "sales@corp.test", "ann@corp.test")
    path = write_csv("name,email\nSales person,sales@corp.test\n")
    with pytest.raises(InvalidRows, match="line 2: email: sales@corp.test is already the address of a mailbox"):
        imports.import_csv(admin, "users", path)


@pytest.mark.parametrize("header, problem", [
    ("name", "missing column(s) email (expected: name,email)"),
    ("name,email,owner", "unknown column(s) 'owner' (expected: name,email)"),
    ("name,email,email", "a column appears twice"),
    ("full name,mail", "missing column(s) name, email; unknown column(s) 'full name', 'mail'"),
])
def test_wrong_columns_refuse_the_file_at_line_one(admin: Actor, write_csv, header: str, problem: str):
    path = write_csv(f"{header}\nAnn,ann@corp.test\n")
    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)
    [(line, text)] = refused.value.problems
    assert line == 1 and problem in text
    assert count("user") == 0


def test_a_file_that_is_not_utf8_is_refused_with_the_line(admin: Actor, write_csv):
    path = write_csv("name,email\nAnn,ann@corp.test\nJos\xe9,jose@corp.test\n".encode("latin-1"))
    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)
    assert refused.value.problems == [(3, "is not UTF-8 text (save the file as UTF-8 CSV)")]
    assert count("user") == 0


@pytest.mark.parametrize("content, message", [
    ("", "import.csv is empty: expected a header line name,email"),
    ("name,email\n\n", "import.csv has a header but no rows"),
])
def test_an_empty_file_is_refused(admin: Actor, write_csv, content: str, message: str):
    with pytest.raises(MbxError, match=message):
        imports.import_csv(admin, "users", write_csv(content))


def test_a_missing_file_is_refused(admin: Actor, tmp_path: Path):
    with pytest.raises(MbxError, match="cannot read .*nowhere.csv: No such file or directory"):
        imports.import_csv(admin, "users", tmp_path / "nowhere.csv")


def test_an_unknown_kind_is_refused(admin: Actor, write_csv):
    with pytest.raises(MbxError, match="kind: 'profiles' is not users or queues"):
        imports.import_csv(admin, "profiles", write_csv("name,email\n"))


def test_a_viewer_cannot_import(actors: Actors, write_csv):
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        imports.import_csv(actors.viewer, "users", write_csv("name,email\nAnn,ann@corp.test\n"))
    assert count("user") == 0


def test_imports_continue_after_existing_records(admin: Actor, write_csv):
    users.add_user(admin, "Ann", "ann@corp.test")
    imports.import_csv(admin, "users", write_csv("name,email\nBob,bob@corp.test\n"))
    imports.import_csv(admin, "users", write_csv("name,email\nCat,cat@corp.test\n", "second.csv"))
    assert count("mailbox") == 3
    owners = {r.email: r.mailbox for r in users.list_users(admin)}
    assert owners == {"ann@corp.test": "ann@corp.test", "bob@corp.test": "bob@corp.test",
                      "cat@corp.test": "cat@corp.test"}
    assert count("mailbox", "user_id IS NULL OR email != (SELECT email FROM \"user\" u WHERE u.id = user_id)") == 0


def test_rows_are_written_each_with_its_mailbox_and_audit_record_names_as_written(admin: Actor, write_csv):
    emails = [f"user{number:02}@corp.test" for number in range(11)]
    # Backslashes and quotes reach the database as written (PostgreSQL's COPY escapes backslashes).
    names = ["User %d \\N \\t %s 'q'" % (number, "\\" * number) for number in range(11)]
    path = write_csv("name,email\n" + "".join(f"{name},{email}\n" for name, email in zip(names, emails)))

    assert imports.import_csv(admin, "users", path)["imported"] == 11

    assert sorted(r.email for r in users.list_users(admin)) == emails
    assert sorted(r.name for r in users.list_users(admin)) == sorted(names)
    assert sorted(mailbox(email)["name"] for email in emails) == sorted(names)
    assert count("mailbox") == 11
    assert count("mailbox", "user_id IS NULL OR email != (SELECT email FROM \"user\" u WHERE u.id = user_id)") == 0
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).get()
    assert (entry.action, entry.record_count, entry.records.count()) == ("user.import", 11, 11)


def test_copied_rows_reach_the_table_as_given(admin: Actor):
    # The import's users and queues go through copy_rows: COPY's text format on PostgreSQL, made a
    # column at a time (a column with nothing to escape is taken as it is).
    from datetime import datetime

    from mbxtui.core import dialect

    moment = datetime(2026, 12, 7, 16, 30, 5)
    rows = [(f"plain {number}", "same", number, None if number % 3 else number, True, moment) for number in range(50)]
    rows += [("tab\there", "back\\slash \\N", -1, 0, False, moment), ("new\nline and \r", "", 2 ** 40, None, 1, None),
             ("\\", "\\.", 0, 7, 0, datetime(2026, 1, 1))]
    database.execute_sql("CREATE TEMPORARY TABLE copied (a text, b text, c bigint, d bigint, e integer, f timestamp)")
    with database.atomic():
        dialect.current().copy_rows(database.connection(), "copied", ["a", "b", "c", "d", "e", "f"], rows)
    read = [tuple(row) for row in database.execute_sql("SELECT a, b, c, d, e, f FROM copied ORDER BY c, a")]
    def as_stored(value):
        return str(value) if isinstance(value, datetime) else int(value) if isinstance(value, bool) else value
    expected = sorted(([as_stored(v) for v in row] for row in rows), key=lambda row: (row[2], row[0]))
    assert [[as_stored(v) for v in row] for row in read] == expected


@pytest.mark.parametrize("bad, problem", [
    ("Dup,user01@corp.test", "line 8: email: user01@corp.test is also on line 3"),
    ("Bad,not-an-address", "line 8: email:"),
])
def test_a_bad_row_in_the_middle_refuses_the_whole_import_naming_its_line(
        admin: Actor, write_csv, bad: str, problem: str):
    rows = [f"User {number},user{number:02}@corp.test" for number in range(11)]
    rows[6] = bad
    path = write_csv("name,email\n" + "".join(f"{row}\n" for row in rows))
    before = snapshot()

    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)

    assert problem in str(refused.value)
    assert snapshot() == before, "the rows before it were not written either"
    assert count("user") == count("mailbox") == 0


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL ends a session idle in a transaction")
def test_a_long_validation_holds_no_transaction_open(admin: Actor, default_profile, write_csv):
    # Validating these addresses takes about a second; the server ends a session idle in a
    # transaction for longer than its timeout (10 s in mbxtui, shortened here to 0.5 s).
    rows = 25_000
    path = write_csv("name,email\n" + "".join(f"User {number},user{number}@corp.test\n" for number in range(rows)))
    database.execute_sql("SET idle_in_transaction_session_timeout = '500ms'")
    try:
        assert imports.import_csv(admin, "users", path)["imported"] == rows
    finally:
        database.execute_sql("RESET idle_in_transaction_session_timeout")
    assert count("mailbox") == rows


def test_a_bad_row_found_after_chunks_were_written_leaves_nothing_written(
        admin: Actor, default_profile, write_csv, monkeypatch):
    # Three rows a chunk: the rows of lines 2-13 are written, chunk by chunk, before the chunk
    # holding line 14 is checked; the file is refused whole all the same, every problem named.
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    rows = [f"User {number},user{number:02}@corp.test" for number in range(16)]
    rows[12] = "Bad,not-an-address"      # line 14
    rows[14] = "Again,USER00@corp.test"  # line 16: the address of line 2, written in the first chunk
    path = write_csv("name,email\n" + "".join(f"{row}\n" for row in rows))
    before = snapshot()

    with pytest.raises(InvalidRows) as refused:
        imports.import_csv(admin, "users", path)

    problems = dict(refused.value.problems)
    assert sorted(problems) == [14, 16]
    assert problems[14].startswith("email: 'not-an-address' is not a valid email address")
    assert problems[16] == "email: user00@corp.test is also on line 2"
    assert snapshot() == before, "the chunks written before the bad row were kept"
    assert count("user") == count("mailbox") == count("audit_entry", "action = 'user.import'") == 0


def test_what_the_validating_thread_raises_reaches_the_caller_and_the_thread_ends_with_the_call(
        admin: Actor, default_profile, write_csv, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    path = write_csv("name,email\n" + "".join(f"User {number},user{number}@corp.test\n" for number in range(40)))
    validate, calls = imports._validate, []

    def failing_on_the_third_chunk(kind, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("validation broke")
        return validate(kind, rows)

    monkeypatch.setattr(imports, "_validate", failing_on_the_third_chunk)
    before = snapshot()
    with pytest.raises(RuntimeError, match="validation broke"):
        imports.import_csv(admin, "users", path)
    assert snapshot() == before
    # The reader stops at the first chunk while the thread, two chunks ahead, waits to hand the
    # next: it has ended when the block does.
    monkeypatch.setattr(imports, "_validate", validate)
    with pytest.raises(LookupError), imports._validated_ahead("users", path) as chunks:
        next(chunks)
        raise LookupError
    assert [t for t in threading.enumerate() if t.name == "import-validation"] == []


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL ends a session idle in a transaction")
def test_the_rows_after_a_bad_one_are_checked_outside_the_transaction(admin: Actor, default_profile, write_csv):
    # Nothing is written after a bad row: validating the 25,000 rows after it (about a second)
    # must not keep the transaction idle past the server's timeout (shortened here to 0.5 s).
    rows = [f"User {number},user{number}@corp.test" for number in range(25_000)]
    rows[1] = "Bad,not-an-address"          # line 3
    rows[-1] = "Again,USER0@corp.test"      # the last line, the address of line 2
    path = write_csv("name,email\n" + "".join(f"{row}\n" for row in rows))
    before = snapshot()
    database.execute_sql("SET idle_in_transaction_session_timeout = '500ms'")
    try:
        with pytest.raises(InvalidRows) as refused:
            imports.import_csv(admin, "users", path)
    finally:
        database.execute_sql("RESET idle_in_transaction_session_timeout")
    assert refused.value.problems[0][0] == 3
    assert refused.value.problems[1:] == [(25_001, "email: user0@corp.test is also on line 2")]
    assert snapshot() == before
