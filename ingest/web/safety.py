"""Which web addresses a rendered page may reach: URL schemes and resolved IP addresses.

A page is fetched for the user, so by default it must not reach the machine's own network:
every host a page contacts is resolved here and refused if any of its addresses is loopback,
private, link-local, multicast, reserved or unspecified (`allow_private=True` lifts that).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

WEB_SCHEMES = ("http", "https")
"""URL schemes rendered as web pages (local files go through `file://`)."""


class BlockedAddressError(Exception):
    """A host may not be contacted; the message says why (unresolvable or a private address)."""


def is_url(source: str | os.PathLike[str]) -> bool:
    """Return True if `source` is an http(s) URL string (not a path)."""
    if not isinstance(source, str):
        return False
    scheme = source.split(":", 1)[0].lower() if ":" in source else ""
    return scheme in WEB_SCHEMES and source[len(scheme) :].startswith("://")


def check_web_url(url: str) -> tuple[str, int]:
    """Return `(host, port)` of an http(s) URL, or raise ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in WEB_SCHEMES:
        raise ValueError(f"only http and https URLs are rendered, not '{parts.scheme}:'")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port ({exc})") from exc
    if not parts.hostname:
        raise ValueError("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def is_private_address(address: str) -> bool:
    """True for loopback, private, link-local, multicast, reserved or unspecified IP addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve_host(host: str, port: int) -> list[str]:
    """Resolve a host name to its IP addresses (blocking; tests may replace this function).

    Raises:
        OSError: The name cannot be resolved.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def allowed_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """Resolve `host` and return the addresses it may be reached at.

    Args:
        host: Host name or IP literal.
        port: TCP port (part of the lookup only).
        allow_private: Accept loopback, private and link-local addresses too.

    Returns:
        At least one IP address.

    Raises:
        BlockedAddressError: The name does not resolve, or (unless allowed) resolves to a
            non-public address. Every address must be public: a name that mixes public and
            private addresses is refused as a whole.
    """
    return check_addresses(host, lookup(host, port), allow_private)


def lookup(host: str, port: int) -> list[str]:
    """Resolve `host` (blocking), turning failures into BlockedAddressError."""
    try:
        addresses = resolve_host(host.strip("[]"), port)
    except (OSError, UnicodeError) as exc:
        raise BlockedAddressError(f"cannot resolve host '{host}' ({exc})") from exc
    if not addresses:
        raise BlockedAddressError(f"host '{host}' has no address")
    return addresses


def check_addresses(host: str, addresses: list[str], allow_private: bool) -> list[str]:
    """Return `addresses` if `host` may be reached at them; raise BlockedAddressError if not."""
    if not allow_private:
        private = [address for address in addresses if is_private_address(address)]
        if private:
            raise BlockedAddressError(
                f"refused: host '{host}' resolves to the non-public address {private[0]} "
                "(loopback, private or link-local); allow it explicitly with allow_private=True "
                "(CLI: --allow-private-urls)"
            )
    return addresses
