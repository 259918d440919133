"""The mailboxes on one email server profile, a page at a time, with how many are in each test
status: what the profile detail view shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mbxtui.core import validation
from mbxtui.core.enums import CheckStatus
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import mailbox_views, profiles


@dataclass
class ProfileMailboxes:
    """``counts`` maps each overall status (not_run, success, failure) to its number of mailboxes;
    ``total`` is every mailbox on the profile, ``rows`` the requested page sorted by name."""

    profile: str
    total: int
    counts: dict[str, int]
    active: int
    rows: list[dict[str, Any]] = field(default_factory=list)


def mailboxes_of_profile(actor: Actor, name: str, *, limit: int = 200, offset: int = 0) -> ProfileMailboxes:
    """A page of the mailboxes using profile ``name`` (rows shaped as ``mailbox_views.rows_by_ids``)."""
    require(actor, Permission.READ)
    limit = validation.integer("limit", limit, 0, 10_000)
    offset = validation.integer("offset", offset, 0, 10**12)
    profile = profiles.get(name)
    counts = {status.value: 0 for status in CheckStatus}
    active = 0
    for status, number, active_number in database.execute_sql(
            "SELECT overall_status, count(*), sum(active) FROM mailbox WHERE profile_id = ? GROUP BY overall_status",
            [profile.id]).fetchall():
        counts[status] = number
        active += active_number or 0
    ids = [row[0] for row in database.execute_sql(
        "SELECT id FROM mailbox WHERE profile_id = ? ORDER BY name COLLATE NOCASE, id LIMIT ? OFFSET ?",
        [profile.id, limit, offset]).fetchall()]
    by_id = mailbox_views.rows_by_ids(actor, ids)
    return ProfileMailboxes(profile=profile.name, total=sum(counts.values()), counts=counts, active=active,
                            rows=[by_id[i] for i in ids if i in by_id])
