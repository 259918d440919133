"""Exceptions raised by the services. Each message is a sentence a person can act on and never
contains a secret."""

import re


class MbxError(Exception):
    """Base of every refusal the services make."""


class InvalidInput(MbxError):
    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InvalidRows(MbxError):
    """Bad rows in an import: every problem, each with its line number."""

    def __init__(self, what: str, problems: list[tuple[int, str]]):
        self.problems = problems
        shown = "; ".join(f"line {line}: {text}" for line, text in problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{what} refused, nothing imported: {len(problems)} bad row(s): {shown}{more}")


class NotFound(MbxError):
    pass


class Conflict(MbxError):
    """The record already exists, or changed since it was read."""


class PermissionDenied(MbxError):
    pass


class NotInitialised(MbxError):
    pass


INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for a role refused by the server
DATABASE_BUSY = ("another session held the database for longer than the busy timeout; nothing was changed, "
                 "try again")
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE
DEADLOCK = ("the database server ended this transaction to break a deadlock with another session; nothing was "
            "changed, try again")


def is_database_error(exc: BaseException) -> bool:
    """An error of the database itself (SQLite or PostgreSQL), as opposed to a refusal or a bug."""
    import sqlite3

    import peewee

    return isinstance(exc, (sqlite3.Error, peewee.DatabaseError, peewee.InterfaceError))


def one_line(text: object) -> str:
    """``text`` with every run of white space (line breaks too) made one space."""
    return " ".join(str(text).split())


def _driver_error(exc: BaseException) -> BaseException | None:
    """The PostgreSQL driver's exception (it has a ``pgcode``) behind ``exc``: peewee wraps it as
    its first argument."""
    return next((c for c in (exc, *exc.args[:1], exc.__cause__, exc.__context__) if hasattr(c, "pgcode")), None)


def refusal(exc: BaseException) -> str | None:
    """The sentence for a server's refusal of the session's role (SQLSTATE 42501), else None."""
    import peewee

    if not isinstance(exc, peewee.DatabaseError):
        return None
    cause = _driver_error(exc)
    if getattr(cause, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
        return None
    diag = getattr(cause, "diag", None)
    reason = one_line(getattr(diag, "message_primary", None) or cause)
    return (f"the database server refused this ({reason}); nothing was changed: your database role may not do "
            "it, ask a global_admin for a role that may")


def problem_sentence(exc: BaseException) -> str:
    """What a face shows, on one line, for an exception a call raised: a fault of the machine
    (``faults.py``: a full disk, a read-only database, its place), a refusal's own sentence, a
    PostgreSQL server's refusal of the session's role, a database that stayed locked or failed, else
    the kind of error and its text. Secrets never reach an exception's text (R4), and no local
    variable is ever shown."""
    from mbxtui.core.faults import fault_sentence

    fault = fault_sentence(exc)
    if fault is not None:  # a full disk, a read-only database...: said with its place, also under a refusal
        return fault
    text = one_line(exc)
    if isinstance(exc, MbxError):
        return text
    if is_database_error(exc):
        refused = refusal(exc)
        if refused is not None:
            return refused
        if getattr(_driver_error(exc), "pgcode", None) == DEADLOCK_DETECTED:
            return DEADLOCK
        if re.search(r"\b(locked|busy)\b", text):  # not "blocked by process" in a deadlock's detail
            return DATABASE_BUSY
        return f"database error: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
