"""Free loopback ports for servers and clients started by the tests."""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def _bindable(port: int, host: str, family: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        sock = socket.socket(family, kind)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (the kernel picks it; we check both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        finally:
            sock.close()
        if port not in _handed_out and _bindable(port, host, family):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def free_port_range(count: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """``count`` consecutive free UDP ports (even start) from 20000-59999, for RTP ranges."""
    for _ in range(200):
        start = random.randrange(20000, 60000 - count, 2)
        ports = range(start, start + count)
        if any(p in _handed_out for p in ports):
            continue
        if all(_bindable(p, host, socket.AF_INET) for p in ports):
            _handed_out.update(ports)
            return start, start + count - 1
    raise RuntimeError(f"no free range of {count} ports found")
