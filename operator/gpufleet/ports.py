"""Free TCP ports on loopback for the processes gpufleet starts locally (dev cluster
components, simulators). The kernel picks the port; a small race remains between
closing the probe socket and the process binding it, which callers accept."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
