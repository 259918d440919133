"""Text from the database made safe for the terminal: control characters (an ESC sequence in a
mailbox name, say) are shown as visible escapes, never sent to the terminal."""

from __future__ import annotations

import itertools
from typing import Any

# C0, DEL and C1 controls, bidirectional marks, embeddings, overrides and isolates (they reorder
# what follows them on the line), line and paragraph separators, and lone surrogates (what bytes
# that are not UTF-8 become; printing one raises).
INVISIBLE = tuple(itertools.chain(
    range(0x00, 0x20), range(0x7F, 0xA0), (0x061C, 0x200E, 0x200F, 0x2028, 0x2029),
    range(0x202A, 0x202F), range(0x2066, 0x206A), range(0xD800, 0xE000),
))
_CONTROL = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in INVISIBLE}


def safe(value: Any) -> str:
    return "" if value is None else str(value).translate(_CONTROL)


def shown(text: str) -> str:
    """``safe`` for text of several lines: its line breaks kept, every other control escaped."""
    return "\n".join(safe(line) for line in text.split("\n"))


def cell(value: Any) -> str:
    """A value as shown in a table or a record: ``-`` for nothing, yes/no for flags."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe(value)


def check_step_lines(directions: dict[str, Any]) -> list[str]:
    """The steps of each direction of a test (as ``MailboxCheckResult.as_dict`` stores them), one
    line each, with the failure's code, class and sentence."""
    lines = []
    for direction, probe in directions.items():
        lines.append(f"  {safe(direction)} ({safe(probe['protocol'])}): {'passed' if probe['ok'] else 'FAILED'}")
        for step in probe["steps"]:
            mark = "ok " if step["ok"] else "ERR"
            lines.append(f"    {mark} {safe(step['step']):<16} {step['seconds'] * 1000:7.1f} ms  {safe(step['detail'])}")
        if probe["failure"]:
            failure = probe["failure"]
            kind = "transient" if failure["transient"] else "permanent"
            lines.append(f"    {safe(failure['code'])} ({kind}): {safe(failure['message'])}")
    return lines
