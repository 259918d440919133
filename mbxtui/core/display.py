"""Text from the database made safe for the terminal: control characters (an ESC sequence in a
mailbox name, say) are shown as visible escapes, never sent to the terminal."""

from __future__ import annotations

from typing import Any

_CONTROL = {i: f"\\x{i:02x}" for i in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0))}


def safe(value: Any) -> str:
    return "" if value is None else str(value).translate(_CONTROL)


def cell(value: Any) -> str:
    """A value as shown in a table or a record: ``-`` for nothing, yes/no for flags."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe(value)


def test_step_lines(directions: dict[str, Any]) -> list[str]:
    """The steps of each direction of a test (as ``MailboxTestResult.as_dict`` stores them), one
    line each, with the failure's code, class and sentence."""
    lines = []
    for direction, probe in directions.items():
        lines.append(f"  {direction} ({probe['protocol']}): {'passed' if probe['ok'] else 'FAILED'}")
        for step in probe["steps"]:
            mark = "ok " if step["ok"] else "ERR"
            lines.append(f"    {mark} {step['step']:<16} {step['seconds'] * 1000:7.1f} ms  {safe(step['detail'])}")
        if probe["failure"]:
            failure = probe["failure"]
            kind = "transient" if failure["transient"] else "permanent"
            lines.append(f"    {failure['code']} ({kind}): {safe(failure['message'])}")
    return lines
