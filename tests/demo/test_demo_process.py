"""The sandbox servers live and die with the process running the demo: killed, terminated, or its
console closed by a signal, no port stays open."""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from mbxtui.demo import DATABASE_NAME, seed

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # a reuse start takes about 2 s; CI machines can be much slower
EXIT_TIMEOUT = 15.0
PORTS_CLOSE_WITHIN = 5.0
PORT_LINE = re.compile(r"^\s+(\w+)\s+127\.0\.0\.1:(\d+)$")
ENTERS_ALTERNATE_SCREEN = b"\x1b[?1049h"
LEAVES_ALTERNATE_SCREEN = b"\x1b[?1049l"


def refusing(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_until_all_refuse(ports: list[int]) -> list[int]:
    """The ports still accepting connections after PORTS_CLOSE_WITHIN seconds."""
    deadline = time.monotonic() + PORTS_CLOSE_WITHIN
    while True:
        open_ports = [port for port in ports if not refusing(port)]
        if not open_ports or time.monotonic() > deadline:
            return open_ports
        time.sleep(0.05)


class ServersOnlyDemo:
    """`python -m mbxtui.demo --servers-only` on a demo directory, with the ports it prints."""

    def __init__(self, demo_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mbxtui.demo", "--servers-only"], cwd=REPO_ROOT,
            env={**os.environ, "MBXTUI_DEMO_DIR": str(demo_dir)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ports = self._wait_for_ports()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def _wait_for_ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        seen: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            if match := PORT_LINE.match(line):
                ports[match[1]] = int(match[2])
            elif "export MBXTUI_DB" in line:
                return ports
        self.process.kill()
        pytest.fail("the demo did not start:\n" + "\n".join(seen))

    def listening_ports(self) -> list[int]:
        return [port for name, port in self.ports.items() if name != "down"]


def test_killing_the_demo_process_closes_every_port_it_opened(demo_dir):
    demo = ServersOnlyDemo(demo_dir)
    assert len(demo.ports) == 10
    assert not any(refusing(port) for port in demo.listening_ports())

    demo.process.send_signal(signal.SIGKILL)
    demo.process.wait(EXIT_TIMEOUT)

    assert wait_until_all_refuse(list(demo.ports.values())) == []


def test_sigterm_stops_the_demo_servers_and_ends_the_process_cleanly(demo_dir):
    demo = ServersOnlyDemo(demo_dir)
    assert not any(refusing(port) for port in demo.listening_ports())

    demo.process.send_signal(signal.SIGTERM)

    assert demo.process.wait(EXIT_TIMEOUT) == 0
    assert wait_until_all_refuse(list(demo.ports.values())) == []


def test_the_console_demo_closes_on_sigterm_and_stops_its_servers(demo_dir):
    """`run_demo` in a terminal: the console comes up over the demo database; SIGTERM closes it as
    ctrl+q would (the terminal's screen is restored) and the sandbox servers go with it."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mbxtui.demo import run_demo; sys.exit(run_demo())"],
        cwd=REPO_ROOT, env={**os.environ, "MBXTUI_DEMO_DIR": str(demo_dir), "TERM": "xterm-256color"},
        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    screen = bytearray()
    reader = threading.Thread(target=_read_terminal, args=(controller, screen), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while ENTERS_ALTERNATE_SCREEN not in screen and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, f"the demo ended by itself:\n{_tail(screen)}"
        assert ENTERS_ALTERNATE_SCREEN in screen, f"the console did not start:\n{_tail(screen)}"
        ports = _profile_ports(demo_dir / DATABASE_NAME)
        assert not any(refusing(port) for port in ports)

        process.send_signal(signal.SIGTERM)

        assert process.wait(EXIT_TIMEOUT) == 0, _tail(screen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(EXIT_TIMEOUT)
        reader.join(EXIT_TIMEOUT)
        os.close(controller)
    assert LEAVES_ALTERNATE_SCREEN in screen
    assert b"the demo's data stays in" in screen
    assert wait_until_all_refuse(ports) == []


def _read_terminal(controller: int, screen: bytearray) -> None:
    """Drain the terminal, or the console would block writing to it."""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the other side is closed
            return
        if not chunk:
            return
        screen.extend(chunk)


def _profile_ports(database: Path) -> list[int]:
    """The ports this start pointed the demo profiles at, but the one where nothing listens."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT name, incoming_port, outgoing_port FROM profile").fetchall()
    finally:
        connection.close()
    return sorted({port for name, incoming, outgoing in rows
                   for port in ((outgoing,) if name == seed.WAREHOUSE else (incoming, outgoing))})


def _tail(screen: bytearray) -> str:
    return screen[-3000:].decode("utf-8", "replace")
