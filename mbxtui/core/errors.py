"""Exceptions raised by the services. Each message is a sentence a person can act on and never
contains a secret."""


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


DATABASE_BUSY = ("another session held the database for longer than the busy timeout; nothing was changed, "
                 "try again")


def is_database_error(exc: BaseException) -> bool:
    """An error of the database itself (SQLite or PostgreSQL), as opposed to a refusal or a bug."""
    import sqlite3

    import peewee

    return isinstance(exc, (sqlite3.Error, peewee.DatabaseError, peewee.InterfaceError))


def problem_sentence(exc: BaseException) -> str:
    """What a face shows, on one line, for an exception a call raised: a refusal's own sentence, a
    database that stayed locked or failed, else the kind of error and its text. Secrets never reach
    an exception's text (R4), and no local variable is ever shown."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MbxError):
        return text
    if is_database_error(exc):
        if "locked" in text or "busy" in text:
            return DATABASE_BUSY
        return f"database error: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
