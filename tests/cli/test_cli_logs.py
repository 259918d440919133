"""The log: written only to the file named by --log-file or MBXTUI_LOG, created owner-only, one
line per event; a refusal is logged as it is printed, an unexpected error with its traceback; and
without a file nothing is logged anywhere (the terminal belongs to the console and to the
command line's contract)."""

from __future__ import annotations

import logging
import re
import os
import stat
from pathlib import Path

import pytest

from mbxtui import logs
from mbxtui.cli import people, program
from mbxtui.core.models import database
from tests.cli.conftest import Cli

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) mbxtui\.[\w.]+ \[\d+ [^\]]+\] ")


def records(path: Path) -> list[str]:
    """The log's records (a traceback's lines belong to the record above them)."""
    found: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if LINE.match(line):
            found.append(line)
        else:
            assert found, f"the log starts with a line that is not a record: {line!r}"
            found[-1] += "\n" + line
    return found


def test_log_file_gets_each_command_and_its_exit_status_and_is_owner_only(cli: Cli, tmp_path: Path):
    log = tmp_path / "logs" / "mbxtui.log"
    log.parent.mkdir()
    quiet = cli.ok("user", "list")

    logged = cli.ok("--log-file", str(log), "user", "list")
    refused = cli.run("--log-file", str(log), "mailbox", "show", "ghost@corp.test")

    assert (logged.stdout, logged.stderr) == (quiet.stdout, quiet.stderr), "the log changes no output"
    assert (refused.returncode, refused.stderr) == (1, "mbxtui: no mailbox with email ghost@corp.test\n")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    lines = records(log)
    assert [line.split("] ", 1)[1] for line in lines] == [
        "mbxtui 0.1.0: user list", "user list: exit status 0", "mbxtui 0.1.0: mailbox show",
        "mailbox show: exit status 1: no mailbox with email ghost@corp.test"]
    assert " WARNING mbxtui.cli.program " in lines[-1]


def test_the_mbxtui_log_variable_names_the_file_and_the_option_wins_over_it(cli: Cli, tmp_path: Path):
    from_env, from_flag = tmp_path / "env.log", tmp_path / "flag.log"

    cli.ok("whoami", env={logs.LOG_ENV: str(from_env)})
    cli.ok("--log-file", str(from_flag), "whoami", env={logs.LOG_ENV: str(from_env)})

    assert len(records(from_env)) == 2 and len(records(from_flag)) == 2
    assert stat.S_IMODE(from_env.stat().st_mode) == 0o600


def test_a_log_file_that_cannot_be_written_is_one_line_and_nothing_runs(cli: Cli, tmp_path: Path):
    before = cli.dump()
    missing = tmp_path / "no such directory" / "mbxtui.log"
    assert cli.fails("--log-file", str(missing), "user", "add", "--name", "Cat", "--email", "cat@corp.test") == (
        f"mbxtui: cannot write the log file {missing}: No such file or directory")
    assert cli.dump() == before


def test_an_unexpected_error_is_one_line_and_logged_with_its_traceback(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    for name, value in cli.env.items():
        if name.startswith(("MBXTUI_", "PYTHON_KEYRING")):
            monkeypatch.setenv(name, value)

    def broken(*_: object) -> int:
        raise RuntimeError("a bug in \x1b[31mred")

    monkeypatch.setattr(people, "cmd_user_list", broken)
    log = tmp_path / "mbxtui.log"
    try:
        assert program.main(["--db", str(cli.db_path), "--log-file", str(log), "user", "list"]) == 1
    finally:
        database.close()

    failure = records(log)[-1]
    assert " CRITICAL mbxtui.logs " in failure and "user list stopped on an unexpected error" in failure
    assert "Traceback (most recent call last):" in failure and 'raise RuntimeError("a bug in' in failure
    assert failure.endswith("RuntimeError: a bug in \\x1b[31mred"), "escape sequences are written as text"
    assert capsys.readouterr().err == (f"mbxtui stopped on an unexpected error (RuntimeError). The report is in "
                                       f"{log}: send it to whoever maintains mbxtui.\n"), "one line, no traceback"
    assert not [h for h in logging.getLogger(logs.ROOT).handlers if isinstance(h, logging.FileHandler)], "closed"


def test_without_a_log_file_nothing_is_logged_anywhere(capfd: pytest.CaptureFixture[str]):
    for name in ("mbxtui.core.jobs", "mbxtui.tui.app", "mbxtui.cli.program"):
        logging.getLogger(name).error("an error nobody asked to see")
        logging.getLogger(name).warning("a warning nobody asked to see")
    assert capfd.readouterr() == ("", "")


@pytest.mark.sqlite_only("the modes of the SQLite file")
def test_a_warning_printed_is_logged_too(cli: Cli, tmp_path: Path):
    log = tmp_path / "mbxtui.log"
    Path(cli.db_path).chmod(0o644)

    done = cli.ok("--log-file", str(log), "whoami")

    assert done.stderr == f"mbxtui: warning: {cli.db_path} can be read by other users; run: chmod 600 {cli.db_path}\n"
    assert [line for line in records(log) if " WARNING mbxtui.cli.context " in line][0].endswith(
        f"] warning: {cli.db_path} can be read by other users; run: chmod 600 {cli.db_path}")


def test_the_log_file_and_a_crash_report_are_0600_even_under_a_umask_that_takes_write_away(tmp_path: Path):
    previous = os.umask(0o277)
    try:
        handler = logs.open_log_file(tmp_path / "strict.log")
        logs.close_log_file(handler)
        report = logs._new_crash_report(tmp_path / "data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "strict.log").stat().st_mode) == 0o600
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
