"""Whether a Prometheus URL points at the pod's own host or link-local space (pure).

A Prometheus URL is fetched by a router (``RoutingPolicy.spec.prometheus.url``, written
by whoever may create policies) or by the operator (``--prometheus-url``). From inside a
pod, loopback is the pod itself (its sidecars, its admin ports) and link-local is the
node's and the cloud's metadata services (``169.254.169.254``): nothing a Prometheus
lives on in a real cluster, so such a host is refused unless the operator was started
with ``--allow-local-prometheus`` — the dev cluster and the tests, whose Prometheus and
pods all live on loopback. Hosts are read as the resolver reads them: ``localhost`` and
``*.localhost``, IPv4 in ``inet_aton``'s spellings (``127.1``, ``2130706433``,
``0x7f.1``), IPv6 (``[::1]``, ``[fe80::1]``, IPv4-mapped ``[::ffff:127.0.0.1]``) and the
unspecified address (``0.0.0.0``, this host). A DNS name that merely resolves to one of
these is not seen here.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

FLAG = "--allow-local-prometheus"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(host: str) -> Address | None:
    try:
        found = ipaddress.ip_address(host)
    except ValueError:
        try:  # the C library's reading, the one the resolver applies to a numeric host
            found = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    mapped = found.ipv4_mapped if isinstance(found, ipaddress.IPv6Address) else None
    return mapped or found


def local_kind(url: str) -> str | None:
    """ "loopback", "link-local" or "unspecified" for a URL whose host is one; None
    for any other host (and for a URL without one)."""
    try:
        host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    address = _address(host) if host else None
    if address is None:
        return None
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return "unspecified" if address.is_unspecified else None


def problem(field: str, url: str, *, allow_local: bool) -> str | None:
    """Why ``url`` (the value of ``field``) may not be used; None when it may."""
    kind = None if allow_local else local_kind(url)
    if kind is None:
        return None
    return (
        f"{field} {url!r} is a {kind} address, refused from inside a pod; point it at "
        f"Prometheus's Service or address, or start the operator with {FLAG} (the dev "
        "cluster, where every pod is on loopback)"
    )
