"""Ports for nodes a command starts on this machine (the soak, and the tests' nodes).

They come from below the kernel's ephemeral range. A port found free inside that range
stays free only until some outgoing connection draws it, and a swarm of peers dialling
each other draws thousands: a 300-peer soak lost a peer to "Address already in use" on a
port it had checked free a minute earlier. Each port's twin (port + ``twin_offset``: a
peer's BEP 3 port, a tracker's HTTP door) is kept free too."""
from __future__ import annotations

import random
import socket
from pathlib import Path

from node import config
from protocol.errors import ZorrentError

LOWEST = 10000            # below this sit well-known services (and zorrent's own defaults, 6881/6969)


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999                      # Linux's default


def free_ports(count: int = 1, taken: set[int] = frozenset(), twin_offset: int = config.BT_PORT_OFFSET) -> int:
    """The first of ``count`` consecutive free ports, none in ``taken``, each with its twin free."""
    low, _ = ephemeral_range()
    top = low - twin_offset - count               # the twins stay below the range too
    bottom = min(LOWEST, top // 2)
    if top <= bottom or bottom < 1024:
        raise ZorrentError(f"no room for {count} ports below the ephemeral range ({low}): "
                           f"raise net.ipv4.ip_local_port_range's start")
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(bottom, top)
        wanted = [q for port in range(base, base + count) for q in (port, port + twin_offset)]
        if taken.intersection(wanted):
            continue
        try:
            for port in wanted:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise ZorrentError(f"no {count} consecutive free ports below the ephemeral range ({low})")


def distinct_free_ports(count: int, taken: set[int] = frozenset()) -> list[int]:
    """``count`` free ports, no two alike, none in ``taken``, and none another's twin."""
    ports: list[int] = []
    blocked = set(taken)
    while len(ports) < count:
        port = free_ports(1, blocked)
        ports.append(port)
        blocked |= {port, port + config.BT_PORT_OFFSET, port - config.BT_PORT_OFFSET}
    return ports
