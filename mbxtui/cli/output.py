"""What every command prints: exit statuses, JSON, tables and records (text from the database made
harmless for the terminal), and the choice between JSON and text."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Sequence

from mbxtui.core.display import INVISIBLE
from mbxtui.core.display import cell as safe

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TEST_FAILED = 0, 1, 2, 3

Columns = Sequence[tuple[str, str]]  # (key in the row, dotted for nested values; column title)

# json.dumps escapes only the C0 controls; the others are written as \u escapes too, so that no
# terminal acts on them (they occur only inside strings, where the escape means the same).
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in INVISIBLE if code >= 0x7F}


def print_json(data: Any) -> None:
    print(json.dumps(data, default=str, ensure_ascii=False, indent=2).translate(_JSON_ESCAPES))


def cell_len(text: str) -> int:
    """The terminal cells ``text`` takes (rich, imported for tables only: 2-4 ms of every JSON command)."""
    from rich.cells import cell_len as cells

    return cells(text)


def _pad(text: str, width: int) -> str:
    """``text`` followed by spaces up to ``width`` terminal cells (a CJK character or an emoji
    takes two cells, a zero-width joiner none)."""
    return text + " " * (width - cell_len(text))


def print_table(rows: Sequence[dict[str, Any]], columns: Columns, *, footer: str = "") -> None:
    cells = [[safe(dig(row, key)) for key, _ in columns] for row in rows]
    widths = [cell_len(title) for _, title in columns]
    for line in cells:
        widths = [max(width, cell_len(text)) for width, text in zip(widths, line)]
    print("  ".join(_pad(title, width) for (_, title), width in zip(columns, widths)).rstrip())
    for line in cells:
        print("  ".join(_pad(text, width) for text, width in zip(line, widths)).rstrip())
    if footer:
        print(footer)


def print_record(data: dict[str, Any], indent: str = "") -> None:
    width = max((len(key) for key in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            print_record(value, indent + "  ")
        elif isinstance(value, list):
            print(f"{indent}{key.ljust(width)}  {', '.join(safe(item) for item in value) or '-'}")
        else:
            print(f"{indent}{key.ljust(width)}  {safe(value)}")


def dig(row: dict[str, Any], key: str) -> Any:
    """``row[a][b]`` for the key ``a.b``; None where a part is missing."""
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    """``data`` as JSON when the command was given --json, else drawn by ``render``."""
    if getattr(args, "json", False):
        print_json(data)
    else:
        render(data)


def table(columns: Columns, *, footer: str = "") -> Callable[[Sequence[dict[str, Any]]], None]:
    """A renderer for ``emit`` that prints the rows as a table of ``columns``."""

    def render(rows: Sequence[dict[str, Any]]) -> None:
        print_table(rows, columns, footer=footer)

    return render
