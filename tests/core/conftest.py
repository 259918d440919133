"""Each core test gets its own real database (a SQLite file, or a PostgreSQL database: see
tests/backends.py), copied from a template made once per session: the schema, a global_admin
(alice) and one operator of every other role (sam, syd, vic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from mbxtui.core import db
from mbxtui.core.permissions import Actor
from mbxtui.core.services import operators, profiles, settings
from mbxtui.core.services.profiles import ProfileRecord
from tests.backends import Databases
from tests.core.support import EXCHANGE_ONLINE_PROFILE, IMAP_PROFILE, LOGINS


@dataclass(frozen=True)
class Actors:
    admin: Actor
    service: Actor
    system: Actor
    viewer: Actor


@pytest.fixture(scope="session")
def template_db(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    path = databases.new(tmp_path_factory.mktemp("template"), "core_template")
    database = db.open_database(path)
    admin = operators.initialise(login=LOGINS["admin"])
    operators.add(admin, LOGINS["service"], "service_admin")
    operators.add(admin, LOGINS["system"], "system_admin")
    operators.add(admin, LOGINS["viewer"], "viewer")
    database.close()  # the last connection to close folds the WAL back into the file
    return path


def open_copy(databases: Databases, template: Path | str, directory: Path) -> tuple[Path | str, object]:
    path = databases.copy(template, directory)
    return path, db.open_database(path)


@pytest.fixture
def db_path(databases: Databases, template_db: Path | str, tmp_path: Path) -> Iterator[Path | str]:
    path, database = open_copy(databases, template_db, tmp_path / "data")
    yield path
    database.close()
    databases.drop(path)


@pytest.fixture
def actors(db_path: Path) -> Actors:
    return Actors(*(operators.current_actor(login=LOGINS[role]) for role in ("admin", "service", "system", "viewer")))


@pytest.fixture
def admin(actors: Actors) -> Actor:
    return actors.admin


@pytest.fixture
def imap_profile(admin: Actor) -> ProfileRecord:
    return profiles.create(admin, **IMAP_PROFILE)


@pytest.fixture
def default_profile(admin: Actor, imap_profile: ProfileRecord) -> ProfileRecord:
    """The IMAP profile, made the organisation's default for new mailboxes."""
    settings.update(admin, default_profile=imap_profile.name)
    return imap_profile


@pytest.fixture
def exchange_online_profile(admin: Actor) -> ProfileRecord:
    return profiles.create(admin, **EXCHANGE_ONLINE_PROFILE)
