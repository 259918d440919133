"""The README's two commands, exactly as written: the first opens the demo console in a real
terminal; the second is what CI runs (``.ci/run`` calls it)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.tui.test_tmux import Terminal, footer

ROOT = Path(__file__).resolve().parents[2]
DEMO_START_TIMEOUT = 120.0  # the first start installs into .venv (a no-op here) and seeds the demo


def readme_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_the_readme_gives_exactly_two_commands_and_ci_runs_the_second():
    assert readme_commands() == ["./scripts/demo", "./scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"


def test_the_first_command_opens_the_demo_console(tmp_path: Path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/install-test-deps installs it)")
    command = readme_commands()[0]
    env = {key: value for key, value in os.environ.items()
           if key not in ("NO_COLOR", "MBXTUI_DB", "MBXTUI_THEME", "TMUX", "MBXTUI_DATA_DIR")}
    env.update({"MBXTUI_DEMO_DIR": str(tmp_path / "demo"), "PYTHONDONTWRITEBYTECODE": "1"})
    terminal = Terminal(f"cd {ROOT} && {command}", env)
    try:
        screen = terminal.wait_for(lambda screen: "mbxtui · Mailboxes" in screen
                                   and footer(screen).startswith("space Mark"), timeout=DEMO_START_TIMEOUT)
        assert "in Active · 0 selected" in screen and "@fernhill" in screen
        terminal.send("6")  # Test and Enable Failed: the demo's deliberate faults are there
        terminal.wait_for(lambda screen: "in Test and Enable Failed" in screen)
        terminal.send("C-q")
        terminal.wait_for(lambda _: terminal.running() == "sleep")
        assert "Traceback" not in terminal.screen()
    finally:
        terminal.close()
    assert (tmp_path / "demo").is_dir(), "the demo kept its files in its own directory"
