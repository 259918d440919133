"""Hosts on one machine: Linux network namespaces joined by a bridge, for the tests of faults across
hosts (tests/hardening/test_hosts.py). Needs root (CI runs as root) and the Debian package
``iptables`` (scripts/install-test-deps).

    with Network() as net:                         # a bridge in this namespace on 10.231.N.1/24
        worker = net.add_host("w1")                # namespace, veth pair, address 10.231.N.11
        relay = net.relay(5432)                    # 10.231.N.1:PORT -> 127.0.0.1:5432, counting
        process = worker.start(["python", ...])    # in the namespace, with a host name of its own
        with worker.cut_off(relay.port):           # packets to and from that port dropped
            ...

The servers (PostgreSQL, the mail lab) stay in this namespace: PostgreSQL listens on the bridge's
address as well, the mail lab's ports are reached through relays bound there. A host resolves
``MAIL_HOST`` to the bridge's address (``/etc/netns/NAME/hosts``, which ``ip netns exec`` mounts
over ``/etc/hosts``): the lab's certificate covers it, so TLS is verified as anywhere else.

Every name carries this process's id: a run that crashed blocks no other, and the next run removes
what a dead process left behind (``sweep``). ``close`` removes everything, also after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import tcp_state
from .errors import LabError
from .loop import LabLoop, stop_and_close

# Covered by the lab's certificate (``*.detect.test``, see certs.py): a host name that reaches
# the mail lab from another namespace.
MAIL_HOST = "mailhost.detect.test"
PREFIX = "mbxh"
NETNS_ETC = Path("/etc/netns")
COMMAND_TIMEOUT = 20.0
INSTALL_HINT = "install it with scripts/install-test-deps (Debian package iptables)"
_OURS = re.compile(rf"^{PREFIX}(\d+)")


def available() -> str | None:
    """Why hosts cannot be made here (not root, no ``ip``, no ``iptables``), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the tests as root)"
    for tool in ("ip", "iptables", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {INSTALL_HINT}"
    return None


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Remove the namespaces, links and /etc/netns entries of runs whose process is gone."""
    removed = []
    for line in run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _OURS.match(name)
        if found and not _alive(int(found[1])):
            run("ip", "netns", "delete", name, check=False)
            removed.append(name)
    for line in run("ip", "-o", "link", "show").stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        found = _OURS.match(name)
        if found and not _alive(int(found[1])):
            run("ip", "link", "delete", name, check=False)
            removed.append(name)
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            found = _OURS.match(entry.name)
            if found and not _alive(int(found[1])):
                shutil.rmtree(entry, ignore_errors=True)
    return removed


@dataclass
class Host:
    """A namespace with one link to the bridge: a machine of its own, as far as TCP can tell."""

    network: Network
    label: str
    namespace: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def start(self, argv: list[str], **popen) -> subprocess.Popen:
        """Start ``argv`` in the namespace with a host name of its own (a UTS namespace), so that a
        worker's identity (host:pid:token) names this host. ``ip netns exec`` and ``unshare`` exec
        in place: the Popen's pid is the program's own (signals reach it, not a wrapper)."""
        command = [*self.exec_prefix(), "unshare", "--uts", "sh", "-c",
                   f'hostname {self.label} && exec "$@"', "sh", *argv]
        process = subprocess.Popen(command, **popen)
        self.processes.append(process)
        return process

    def iptables(self, *rule: str) -> None:
        run(*self.exec_prefix(), "iptables", "-w", *rule)

    def drop(self, port: int, *, probability: float | None = None) -> None:
        """Drop packets to and from ``port`` on the bridge's address (all of them, or at random
        with ``probability``)."""
        chance = ["-m", "statistic", "--mode", "random", "--probability", str(probability)] if probability else []
        server = self.network.address
        self.iptables("-A", "OUTPUT", "-p", "tcp", "-d", server, "--dport", str(port), *chance, "-j", "DROP")
        self.iptables("-A", "INPUT", "-p", "tcp", "-s", server, "--sport", str(port), *chance, "-j", "DROP")

    def heal(self) -> None:
        self.iptables("-F", "OUTPUT")
        self.iptables("-F", "INPUT")

    @contextlib.contextmanager
    def cut_off(self, *ports: int) -> Iterator[None]:
        """A partition from those ports (every packet dropped both ways) for the block's time."""
        try:
            for port in ports:
                self.drop(port)
            yield
        finally:
            self.heal()

    def link(self, up: bool) -> None:
        run(*self.exec_prefix(), "ip", "link", "set", "eth0", "up" if up else "down")

    def stop_processes(self, timeout: float = 20.0) -> None:
        """SIGCONT (a paused one would never end) then SIGTERM each process still running; SIGKILL
        what has not ended within ``timeout``."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class Network:
    """A bridge in this namespace with ``address`` (x.x.x.1/24) and hosts joined to it."""

    def __init__(self) -> None:
        sweep()
        pid = os.getpid()
        self.tag = f"{PREFIX}{pid}"
        self.bridge = f"{self.tag}br"
        number = pid % 250 + 1
        self.subnet = f"10.231.{number}"
        self.address = f"{self.subnet}.1"
        self.hosts: list[Host] = []
        self.relays: list[Relay] = []
        self._loop: LabLoop | None = None
        try:
            # A bridge whose address is not set takes the lowest of its ports' addresses, so it
            # changed as hosts joined (three runs in three), and a host whose ARP cache still held
            # the old one reached nothing: a worker started just before the next host was added
            # timed out connecting to PostgreSQL. Set, it stays.
            run("ip", "link", "add", self.bridge, "address", f"02:00:0a:e7:{number:02x}:01", "type", "bridge")
            run("ip", "addr", "add", f"{self.address}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, label: str) -> Host:
        number = len(self.hosts) + 1
        namespace = f"{self.tag}{label}"
        outside, inside = f"{self.tag}v{number}", f"{self.tag}p{number}"
        address = f"{self.subnet}.{10 + number}"
        host = Host(self, label, namespace, address)
        self.hosts.append(host)
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", outside, "master", self.bridge)
        run("ip", "link", "set", outside, "up")
        run("ip", "link", "set", inside, "netns", namespace)
        inner = host.exec_prefix()
        run(*inner, "ip", "link", "set", inside, "name", "eth0")
        run(*inner, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        run(*inner, "ip", "link", "set", "eth0", "up")
        run(*inner, "ip", "link", "set", "lo", "up")
        etc = NETNS_ETC / namespace
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{self.address} {MAIL_HOST}\n")
        self._wait_reachable(host)
        return host

    def _wait_reachable(self, host: Host, timeout: float = 10.0) -> None:
        """A new veth link takes a moment (the bridge's forwarding state): wait until the host
        reaches this side over TCP (``ping`` is not installed)."""
        probe = (f"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\n"
                 f"sys.exit(0 if s.connect_ex(('{self.address}', 9)) in (0, 111) else 1)")
        deadline = time.monotonic() + timeout
        while run(*host.exec_prefix(), "python3", "-c", probe, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise LabError(f"host {host.label} cannot reach {self.address} within {timeout:.0f} s")
            time.sleep(0.1)

    def relay(self, upstream_port: int, *, delay: float = 0.0) -> Relay:
        """A relay listening on this network's address, to 127.0.0.1:upstream_port."""
        if self._loop is None:
            self._loop = LabLoop()
        relay = Relay(self._loop, self.address, upstream_port, delay)
        self._loop.call(relay.start())
        self.relays.append(relay)
        return relay

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop_processes()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.stop()
        for host in self.hosts:
            run("ip", "netns", "delete", host.namespace, check=False)  # its end of the veth pair goes too
            shutil.rmtree(NETNS_ETC / host.namespace, ignore_errors=True)
        for number in range(1, len(self.hosts) + 1):
            run("ip", "link", "delete", f"{self.tag}v{number}", check=False)
        run("ip", "link", "delete", self.bridge, check=False)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only when empty: other namespaces' files stay

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Relay:
    """A TCP relay on ``address``, to 127.0.0.1:upstream_port: the server's side of every
    connection from another host. ``delay``: seconds each chunk from the server waits before it is
    passed on, so every reply comes that much later (latency without ``tc netem``, which these
    kernels lack).

    Counted at the server's side: a connection is open from its accept until the client's FIN
    reaches this host (the accepted socket's kernel state leaves ESTABLISHED). ``most``: the most
    open at once since ``start_counting``; a client that is paused or cut off still holds its
    connections open here, as it would at a real server."""

    def __init__(self, lab_loop: LabLoop, address: str, upstream_port: int, delay: float) -> None:
        self._lab_loop = lab_loop
        self.address = address
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self.total = 0
        self.most = 0
        self.at_most: list[str] = []  # the client addresses of the connections open at the last new most
        self._clients: dict[asyncio.StreamWriter, tuple[str, int]] = {}
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, self.address, 0, backlog=1024, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def open_now(self) -> int:
        return self._lab_loop.call(self._open())

    def open_from(self, address: str) -> int:
        """Connections from a client at ``address`` open now."""
        return self._lab_loop.call(self._open(address))

    def start_counting(self) -> None:
        self._lab_loop.call(self._count_afresh())

    async def _count_afresh(self) -> None:
        self.most = await self._open()
        self.at_most = []

    async def _open(self, address: str | None = None) -> int:
        here = (self.address, self.port)
        return sum(1 for client in list(self._clients.values())
                   if (address is None or client[0] == address)
                   and tcp_state.tcp_state(here, client) == tcp_state.ESTABLISHED)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.total += 1
        client = writer.get_extra_info("peername")
        if client is not None:
            self._clients[writer] = client[:2]
        open_now = await self._open()
        if open_now > self.most:
            self.most = open_now
            here = (self.address, self.port)
            self.at_most = sorted(client[0] for client in self._clients.values()
                                  if tcp_state.tcp_state(here, client) == tcp_state.ESTABLISHED)
        tasks: list[asyncio.Task] = []
        upstream_writer = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port,
                                                                             limit=1 << 20)
            self._lab_loop.transports.add(writer.transport)
            self._lab_loop.transports.add(upstream_writer.transport)
            tasks = [asyncio.create_task(self._pass(reader, upstream_writer, 0.0)),
                     asyncio.create_task(self._pass(upstream_reader, writer, self.delay))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.pop(writer, None)
            if tasks:
                await stop_and_close(tasks)
            for end in (writer, upstream_writer):
                if end is not None:
                    end.close()

    async def _pass(self, source: asyncio.StreamReader, destination: asyncio.StreamWriter, delay: float) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                destination.write(data)
                await destination.drain()
