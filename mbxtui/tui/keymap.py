"""The operator's own keys: ``keymap.toml`` in the config directory (``MBXTUI_CONFIG_DIR``, else
the platform's user config directory) rebinds any binding of the console by its id, as Posting
does, through ``App.set_keymap``::

    go-alerts = "f12"           # the Alerts screen on F12 instead of F4
    mailboxes-approve = "ctrl+a"
    help = "f1,h"               # several keys: comma-separated

A file that cannot be used (bad TOML, an unknown id, a value that is not a key) is refused as a
whole with the line at fault, and the default keys stay."""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from textual.binding import Binding
from textual.dom import DOMNode

from mbxtui.core.paths import config_dir

KEYMAP_FILE = "keymap.toml"


def keymap_path() -> Path:
    return config_dir() / KEYMAP_FILE


@dataclass
class Keymap:
    """What the file rebinds (empty when there is no file or it was refused) and why it was refused."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# The modules whose classes declare the console's bindings: imported before their ids are collected.
BINDING_MODULES = (
    "mbxtui.tui.app", "mbxtui.tui.screens.alerts", "mbxtui.tui.screens.failed", "mbxtui.tui.screens.forms",
    "mbxtui.tui.screens.help", "mbxtui.tui.screens.mailbox_detail", "mbxtui.tui.screens.mailboxes",
    "mbxtui.tui.screens.operators", "mbxtui.tui.screens.people", "mbxtui.tui.screens.profiles",
    "mbxtui.tui.screens.settings", "mbxtui.tui.screens.unlock", "mbxtui.tui.widgets.confirm",
    "mbxtui.tui.widgets.grid",
)


def binding_ids() -> set[str]:
    """Every binding id of the console: its app, screens, dialogs and widgets."""
    for module in BINDING_MODULES:
        importlib.import_module(module)
    ids: set[str] = set()
    for node_class in _subclasses(DOMNode):
        if node_class.__module__.startswith("mbxtui.tui"):
            ids.update(binding.id for binding in node_class.BINDINGS
                       if isinstance(binding, Binding) and binding.id)
    return ids


def _subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def flattened(entries: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``grid.toggle_mark = "m"`` is a table in TOML: its dotted path is the binding id."""
    for key, value in entries.items():
        if isinstance(value, dict):
            yield from flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def line_of(text: str, binding_id: str) -> int | None:
    """The line that sets ``binding_id`` (bare, quoted, dotted or under its table), counted from 1."""
    for name in (binding_id, binding_id.rsplit(".", 1)[-1]):
        pattern = re.compile(rf"""^\s*(["']?){re.escape(name)}\1\s*=""")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.match(line):
                return number
    return None


def read_keymap(path: Path | None = None, known_ids: set[str] | None = None) -> Keymap:
    """Read and check the keymap file; a missing file is no keymap and no problem."""
    path = keymap_path() if path is None else path
    keymap = Keymap(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return keymap
    except (OSError, UnicodeDecodeError) as exc:
        keymap.problems.append(f"{path}: cannot be read: {exc}")
        return keymap
    try:
        entries = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        keymap.problems.append(f"{path}: not TOML: {exc}")
        return keymap
    known = binding_ids() if known_ids is None else known_ids
    keys: dict[str, str] = {}
    for binding_id, value in flattened(entries):
        where = f"{path}, line {line_of(text, binding_id) or '?'}"
        if binding_id not in known:
            keymap.problems.append(f"{where}: no binding has the id {binding_id!r}")
        elif not isinstance(value, str) or not value.strip() or any(not key.strip() for key in value.split(",")):
            keymap.problems.append(f"{where}: {binding_id} must be a key such as \"f9\" or \"ctrl+a\", "
                                   f"or keys separated by commas, not {value!r}")
        else:
            keys[binding_id] = ",".join(key.strip() for key in value.split(","))
    if not keymap.problems:
        keymap.keys = keys
    return keymap
