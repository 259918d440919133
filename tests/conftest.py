from collections.abc import Iterator

import pytest

from tests.backends import ON_POSTGRES, Databases
from tests.lab.fixture import mail_lab  # noqa: F401  (a session fixture)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): about SQLite itself; skipped when the suite runs on PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "about SQLite itself")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {'postgresql' if ON_POSTGRES else 'sqlite'} (MBXTUI_TEST_BACKEND)"


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """Where each test's database comes from: SQLite files, or a private PostgreSQL server."""
    if not ON_POSTGRES:
        yield Databases()
        return
    from tests.lab.postgres import start_postgres

    server = start_postgres()
    try:
        yield Databases(server)
    finally:
        server.stop()
