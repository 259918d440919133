"""The kernel's state of one TCP socket on this machine, found by its addresses (Linux sock_diag, as
``ss`` asks it): whether a client still holds a connection open, read at the client's own end."""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
ALL_STATES = 0xFFFFFFFF
# include/net/tcp_states.h: the states of a socket whose own side has not closed (or shut down) yet.
ESTABLISHED = 1
CLOSE_WAIT = 8
STILL_OPEN = frozenset({ESTABLISHED, CLOSE_WAIT})


def tcp_state(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The state of the IPv4 TCP socket bound to ``local`` and connected to ``remote``; None when
    the kernel has no such socket (closed and gone)."""
    found = _diag(local, remote)
    return None if found is None else found[0]


def held_here(local: tuple[str, int], remote: tuple[str, int]) -> bool:
    """Whether a descriptor of this process holds that socket (else another process does, or none)."""
    found = _diag(local, remote)
    if found is None:
        return False
    wanted = f"socket:[{found[1]}]"
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == wanted:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _diag(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """The socket's state and inode, or None."""
    sockid = (struct.pack("!HH", local[1], remote[1]) + socket.inet_aton(local[0]) + bytes(12)
              + socket.inet_aton(remote[0]) + bytes(12)
              + struct.pack("=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, ALL_STATES) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.send(header + request)
        reply = netlink.recv(65536)
    if struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR:
        error = -struct.unpack_from("=i", reply, 16)[0]
        if error == errno.ENOENT:
            return None
        raise OSError(error, f"sock_diag: {os.strerror(error)}")
    # After the netlink header, inet_diag_msg: family, state, timer, retrans, the socket's id (48
    # bytes), expires, rqueue, wqueue, uid, inode.
    return reply[17], struct.unpack_from("=I", reply, 16 + 68)[0]


def still_open(local: tuple[str, int], remote: tuple[str, int]) -> bool:
    """Whether the socket at ``local`` connected to ``remote`` is still open at its own end: its
    owner has neither closed it (its last descriptor) nor shut it down, whatever the peer did."""
    return tcp_state(local, remote) in STILL_OPEN
