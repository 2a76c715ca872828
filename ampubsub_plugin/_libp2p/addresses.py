"""Listen addresses: checked before py-libp2p binds, announced as dialable.

Rules:

1. A listen address is tried with a plain socket before py-libp2p binds it
   (:func:`check_can_listen`): py-libp2p's TCP listener sets SO_REUSEPORT,
   so a port another process already listens on is accepted silently and the
   two processes share (steal) its connections. The probe doesn't set
   SO_REUSEPORT, so it fails with EADDRINUSE there, and with EADDRNOTAVAIL
   for an IP that isn't this host's. (It sets SO_REUSEADDR, so a port with
   connections in TIME_WAIT from our own last run still counts as free.)
2. An unspecified listen address (``0.0.0.0``, ``::``) is announced as this
   host's interface addresses (:func:`expand_unspecified`, used as
   py-libp2p's ``addrs_factory``): ``0.0.0.0`` can't be dialled from another
   host. Non-loopback first, loopback last; IPv6 link-local addresses are
   left out (they need a zone to be dialled).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import ifaddr
import multiaddr  # type: ignore[import-untyped]

UNSPECIFIED = {"ip4": "0.0.0.0", "ip6": "::"}


def _ip_and_port(addr: multiaddr.Multiaddr) -> tuple[str, str, int, int] | None:
    """(ip protocol, ip, socket type, port) of an ip4/ip6 + tcp/udp address."""
    family_proto = None
    for proto in ("ip4", "ip6"):
        if proto in _protocol_names(addr):
            family_proto = proto
    if family_proto is None:
        return None
    ip = addr.value_for_protocol(family_proto)
    for proto, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
        if proto in _protocol_names(addr):
            return family_proto, ip, kind, int(addr.value_for_protocol(proto))
    return None


def _protocol_names(addr: multiaddr.Multiaddr) -> list[str]:
    return [p.name for p in addr.protocols()]


def check_can_listen(addrs: Iterable[multiaddr.Multiaddr]) -> None:
    """Raise ``OSError`` (with its errno) for an address we can't listen on.

    The message names the multiaddr. Addresses other than ip4/ip6 with
    tcp/udp pass unchecked.
    """
    for addr in addrs:
        parts = _ip_and_port(addr)
        if parts is None:
            continue
        proto, ip, kind, port = parts
        family = socket.AF_INET if proto == "ip4" else socket.AF_INET6
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((ip, port))
                if kind == socket.SOCK_STREAM:
                    probe.listen(1)
            except OSError as error:
                raise OSError(
                    error.errno, f"can't listen on {addr}: {error.strerror}"
                ) from None


def interface_ips(version: int) -> list[str]:
    """This host's IP addresses of one version: non-loopback first, no link-local."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for adapter in ifaddr.get_adapters():
        for entry in adapter.ips:
            raw = entry.ip if isinstance(entry.ip, str) else entry.ip[0]
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if ip.version != version or ip.is_link_local or ip in found:
                continue
            found.append(ip)
    found.sort(key=lambda ip: ip.is_loopback)  # stable: keeps the OS's order
    return [str(ip) for ip in found]


def expand_unspecified(addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """``addrs`` with each ``0.0.0.0`` / ``::`` replaced by this host's IPs.

    py-libp2p's ``addrs_factory``: what ``host.get_addrs()`` announces (and
    so what ``Topic.addrs`` and identify tell others).
    """
    result: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        text = str(addr)
        replaced = False
        for proto, version in (("ip4", 4), ("ip6", 6)):
            prefix = f"/{proto}/{UNSPECIFIED[proto]}/"
            if text.startswith(prefix):
                rest = text[len(prefix) - 1 :]
                for ip in interface_ips(version):
                    candidate = multiaddr.Multiaddr(f"/{proto}/{ip}{rest}")
                    if candidate not in result:
                        result.append(candidate)
                replaced = True
        if not replaced and addr not in result:
            result.append(addr)
    return result
