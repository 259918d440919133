"""Lists of values in SQL: the ``?`` placeholders of ``IN (...)`` and of multi-row ``VALUES``, and a
long list cut into chunks, one statement each.

Why chunks: SQLite refuses a statement that binds more than SQLITE_MAX_VARIABLE_NUMBER values: 999
before 3.32, 32,766 by default since (3.40.1 as Debian 12 builds it allows 250,000),
and any build may set it lower. ``IN_LIST_SIZE`` ids with up to 499 other values of the same
statement stay within 999, so a statement runs on every build. PostgreSQL's protocol binds at most
65,535 values, but psycopg2 quotes the values into the statement's text on the client and binds
none (an IN list of 70,000 values ran as one statement of 409 kB): there the chunks only keep each
statement short.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

T = TypeVar("T")

IN_LIST_SIZE = 500  # values of one IN list: see above


def placeholders(values: Sized) -> str:
    """``?,?,?``: one placeholder per value, for ``IN (...)`` or ``VALUES (...)``."""
    if not len(values):
        raise ValueError("an SQL list needs at least one value: IN () and VALUES () are not SQL")
    return ",".join("?" * len(values))


def row_placeholders(width: int, rows: Sized) -> str:
    """``(?,?), (?,?)``: ``width`` placeholders per row, one group per row of ``rows``."""
    group = f"({placeholders(range(width))})"
    if not len(rows):
        raise ValueError("an SQL VALUES list needs at least one row")
    return ", ".join([group] * len(rows))


def chunks(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """``values`` in order, ``size`` at a time (the last chunk may be shorter; none when there
    are no values). It reads ``values`` only as far as the chunks taken."""
    if size < 1:
        raise ValueError(f"chunks of {size} values: the size must be at least 1")
    remaining = iter(values)
    while chunk := list(itertools.islice(remaining, size)):
        yield chunk


def in_list_chunks(values: Iterable[T], size: int = IN_LIST_SIZE) -> Iterator[tuple[str, list[T]]]:
    """``values`` in chunks of at most ``size``, each with its placeholders: run a statement with
    ``IN ({marks})`` once per chunk. No chunk, and so no statement, when there are no values."""
    for chunk in chunks(values, size):
        yield placeholders(chunk), chunk
