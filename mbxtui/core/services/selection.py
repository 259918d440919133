"""Which mailboxes a bulk action applies to (``Selection``: explicit ids or addresses, a view and
filter, or a profile), and that selection materialised for set-based SQL: the ids go into the
connection's temporary table ``dialect.SELECTION_TABLE`` inside the caller's transaction, and the
bulk statements name them with ``SELECTED``."""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from mbxtui.core import dialect, validation
from mbxtui.core.enums import View
from mbxtui.core.errors import InvalidInput, NotFound
from mbxtui.core.models import Profile, database
from mbxtui.core.permissions import Actor
from mbxtui.core.services.mailbox_views import where_for

SELECTED = f"id IN (SELECT id FROM {dialect.SELECTION_TABLE})"


def update_selected() -> str:
    """The start of a set-based UPDATE of mailboxes (see ``dialect.bulk_update``)."""
    return dialect.current().bulk_update("mailbox")


@dataclass(frozen=True)
class Selection:
    """Which mailboxes a bulk action applies to: explicit ids or addresses, or a whole view + filter."""

    ids: Sequence[int] | None = None
    emails: tuple[str, ...] | None = None
    view: str | None = None
    filter_text: str | None = None
    profile: str | None = None
    up_to_id: int | None = None  # with a view: leave out mailboxes created after it was read

    @classmethod
    def of_emails(cls, emails: Iterable[str]) -> "Selection":
        return cls(emails=tuple(emails))

    @classmethod
    def of_ids(cls, ids: Iterable[int]) -> "Selection":
        # An array: a million marked mailboxes take 8 MB instead of 36 MB as a tuple of ints.
        return cls(ids=array("q", ids))

    @classmethod
    def of_profile(cls, name: str) -> "Selection":
        return cls(profile=name)

    @classmethod
    def of_view(cls, view: str | None, filter_text: str | None = None, up_to_id: int | None = None) -> "Selection":
        return cls(view=view or View.ACTIVE.value, filter_text=filter_text, up_to_id=up_to_id)


def materialise(actor: Actor, selection: Selection, only: tuple[str, Sequence[Any]] | None = None) -> int:
    """Fill the selection table with the selection (inside the caller's transaction) and return
    how many mailboxes it holds. ``only`` (a condition on mailbox and its parameters) keeps just
    the mailboxes an action changes, so that a view of a million mailboxes of which a few
    thousand change is not copied whole (the table then holds exactly those); the number returned
    still counts the whole selection."""
    sql = dialect.current()
    table = dialect.SELECTION_TABLE
    database.execute_sql(sql.create_selection_table())
    database.execute_sql(f"DELETE FROM {table}")
    if selection.emails is not None:
        addresses = [validation.email("email", e) for e in selection.emails]
        database.cursor().executemany(sql.insert_ignore(f"{table} (id)", "SELECT id FROM mailbox WHERE email = ?"),
                                      [(a,) for a in addresses])
        found = {r[0] for r in database.execute_sql(
            f"SELECT m.email FROM mailbox m JOIN {table} s ON s.id = m.id")}
        missing = [a for a in addresses if a not in found]
        if missing:
            raise NotFound("no mailbox with email " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        count = _count(table)
        if only is not None:
            database.execute_sql(f"DELETE FROM {table} WHERE id IN (SELECT id FROM mailbox WHERE NOT ({only[0]}))",
                                 list(only[1]))
        return count
    if selection.ids is not None:
        # The ids travel as one JSON list of [first, last] runs, joined to the table in one
        # statement: a million ids in one row-by-row executemany took 2.6 s on SQLite (and a round
        # trip each on PostgreSQL); marks of a whole view are mostly one run.
        source, where, params = f"FROM {sql.id_ranges_join()}", "TRUE", [id_runs_json(selection.ids)]
    elif selection.profile is not None:
        name = validation.text("profile", selection.profile)
        profile = Profile.get_or_none(Profile.name == name)
        if profile is None:
            raise NotFound(f"no profile named {name!r}")
        source, where, params = "FROM mailbox m", "m.profile_id = ?", [profile.id]
    else:
        source = "FROM mailbox m"
        where, params = where_for(actor, selection.view or View.ACTIVE, selection.filter_text)
        if selection.up_to_id is not None:
            where, params = f"{where} AND m.id <= ?", [*params, selection.up_to_id]
    if only is None:
        database.execute_sql(f"INSERT INTO {table} (id) SELECT m.id {source} WHERE {where}", params)
        return _count(table)
    count = database.execute_sql(f"SELECT count(*) {source} WHERE {where}", params).fetchone()[0]
    if count == 0:
        raise NotFound("no mailboxes selected")
    database.execute_sql(f"INSERT INTO {table} (id) SELECT m.id {source} WHERE ({where}) AND {only[0]}",
                         [*params, *only[1]])
    return count


def _count(table: str) -> int:
    count = database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0]
    if count == 0:
        raise NotFound("no mailboxes selected")
    return count


def id_runs_json(ids: Iterable[int]) -> str:
    """``ids`` as a JSON list of [first, last] runs of consecutive ids, ascending, each id once."""
    ordered = ids if isinstance(ids, array) and _ascending(ids) else array("q", sorted(set(ids)))
    if not ordered:
        return "[]"
    runs = []
    first = last = ordered[0]
    for record_id in itertools.islice(ordered, 1, None):
        if record_id != last + 1:
            runs.append(f"[{first},{last}]")
            first = record_id
        last = record_id
    runs.append(f"[{first},{last}]")
    return "[" + ",".join(runs) + "]"


def _ascending(ids: array) -> bool:
    return all(map(int.__lt__, ids, itertools.islice(ids, 1, None)))


def _examples(where: str, params: Sequence[Any] = ()) -> tuple[int, str]:
    rows = database.execute_sql(f"SELECT email FROM mailbox WHERE {SELECTED} AND {where} LIMIT 3", params).fetchall()
    count = database.execute_sql(f"SELECT count(*) FROM mailbox WHERE {SELECTED} AND {where}", params).fetchone()[0]
    shown = ", ".join(r[0] for r in rows) + (" ..." if count > len(rows) else "")
    return count, shown


def refuse_if_any(where: str, params: Sequence[Any], field_name: str, problem: str) -> None:
    count, shown = _examples(where, params)
    if count:
        raise InvalidInput(field_name, f"{problem} ({count} selected mailbox(es): {shown}); nothing was changed")
