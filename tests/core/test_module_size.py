"""No module of the product is over 600 lines: past that a module does more than one job a newcomer
can name, and it is split by job (the jobs package, the cli package, the grid's modules)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mbxtui"
MOST_LINES = 600


def line_counts() -> dict[str, int]:
    return {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_the_package_has_modules_to_measure() -> None:
    assert len(line_counts()) > 50


def test_no_module_is_over_600_lines() -> None:
    too_long = {path: lines for path, lines in line_counts().items() if lines > MOST_LINES}
    assert too_long == {}, f"split these by job, each to at most {MOST_LINES} lines: {too_long}"
