"""A long list of ids runs as one IN list a chunk, each chunk within the parameters SQLite binds:
checked on a real SQLite file, at the chunk boundaries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mbxtui.core.sql_lists import IN_LIST_SIZE, chunks, in_list_chunks, placeholders, row_placeholders

OLDEST_SQLITE_LIMIT = 999  # SQLITE_MAX_VARIABLE_NUMBER before SQLite 3.32


@pytest.fixture
def connection(tmp_path: Path):
    connection = sqlite3.connect(tmp_path / "ids.db")
    # The limit of the SQLite builds that bind the fewest values, whatever this build allows.
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, OLDEST_SQLITE_LIMIT)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, tag TEXT)")
    connection.executemany("INSERT INTO item (id, tag) VALUES (?, ?)",
                           [(n, "even" if n % 2 == 0 else "odd") for n in range(1, 2 * IN_LIST_SIZE + 2)])
    yield connection
    connection.close()


@pytest.mark.parametrize("count, statements", [(0, 0), (1, 1), (IN_LIST_SIZE, 1), (IN_LIST_SIZE + 1, 2)])
def test_each_id_is_read_once_in_one_statement_a_chunk(connection, count, statements):
    ids = list(range(1, count + 1))
    found: list[int] = []
    run = 0
    for marks, chunk in in_list_chunks(iter(ids)):
        found.extend(row[0] for row in connection.execute(f"SELECT id FROM item WHERE id IN ({marks})", chunk))
        run += 1
    assert run == statements
    assert sorted(found) == ids


def test_a_chunk_with_the_statements_other_values_binds_on_the_oldest_sqlite(connection):
    ids = list(range(1, IN_LIST_SIZE + 1))
    others = ["even"] * (OLDEST_SQLITE_LIMIT - IN_LIST_SIZE)
    (marks, chunk), = in_list_chunks(ids)
    rows = connection.execute(f"SELECT count(*) FROM item WHERE id IN ({marks}) AND tag IN ({placeholders(others)})",
                              [*chunk, *others]).fetchone()
    assert rows == (IN_LIST_SIZE // 2,)
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        connection.execute(f"SELECT id FROM item WHERE id IN ({placeholders(range(OLDEST_SQLITE_LIMIT + 1))})",
                           list(range(OLDEST_SQLITE_LIMIT + 1)))


def test_rows_of_values_insert_in_chunks(connection):
    rows = [(n, "new") for n in range(10_001, 10_006)]
    for chunk in chunks(rows, 2):
        connection.execute(f"INSERT INTO item (id, tag) VALUES {row_placeholders(2, chunk)}",
                           [value for row in chunk for value in row])
    assert connection.execute("SELECT id FROM item WHERE tag = 'new' ORDER BY id").fetchall() == [(n,) for n, _ in rows]


def test_an_empty_list_or_chunk_size_is_refused_by_name():
    with pytest.raises(ValueError, match="at least one value"):
        placeholders([])
    with pytest.raises(ValueError, match="at least one row"):
        row_placeholders(2, [])
    with pytest.raises(ValueError, match="the size must be at least 1"):
        list(chunks([1, 2], 0))
