"""Trusted proxies: the client's address from ``X-Forwarded-For``, only through proxies we trust.

Any client can send ``X-Forwarded-For: 1.2.3.4``; only what a proxy we trust
appended is true. So the header is read only when the peer (the socket's other
end) is in ``HTTP_TRUSTED_PROXIES``, and walked from the right: each address a
trusted hop reports is believed, and the first one that is not itself a
trusted proxy is the client. An entry that is no IP address ends the walk at
the last trusted hop. ``X-Forwarded-Proto`` from a trusted peer sets the
scheme. The result is written into the ASGI scope (``scope["client"]``), so
``context.client``, ``context.request.client`` and the rate limiter all see
the same address. Uvicorn must not apply these headers itself
(``--no-proxy-headers``; ``microcore dev`` runs it so), or it would have
rewritten the peer before we see it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

from microcore.tooling import ConfigurationError

__all__ = ("TrustedProxies",)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WEBSOCKET = {"http": "ws", "https": "wss"}
_CACHE_SIZE = 1024


class TrustedProxies:
    """The networks whose ``X-Forwarded-*`` headers are believed, parsed once at setup."""

    __slots__ = ("_known", "networks")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._known: dict[str, bool] = {}

    @classmethod
    def parse(cls, raw: str | None) -> TrustedProxies | None:
        """``"10.0.0.0/8, 127.0.0.1"`` -> the networks (None when ``raw`` is empty).

        >>> TrustedProxies.parse("10.0.0.1/8")
        ConfigurationError: HTTP_TRUSTED_PROXIES: '10.0.0.1/8' is not a network ...
        """
        entries = [entry.strip() for entry in (raw or "").split(",") if entry.strip()]
        if not entries:
            return None
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                raise ConfigurationError(
                    f"HTTP_TRUSTED_PROXIES: {entry!r} is not a network ({exc}); list the "
                    "addresses or CIDR networks of your proxies, e.g. "
                    "HTTP_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8"
                ) from exc
        return cls(networks)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (an address) is one of the trusted proxies."""
        known = self._known.get(host)
        if known is None:
            address = _address(host)
            known = address is not None and any(address in net for net in self.networks)
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[host] = known
        return known

    def apply(self, scope: Scope) -> None:
        """Rewrite ``scope``'s client (and scheme) from the forwarded headers of a trusted peer."""
        peer = scope.get("client")
        if not peer or not self.trusts(peer[0]):
            return
        forwarded: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
        if forwarded:
            host = peer[0]
            for entry in reversed(forwarded):
                address = _address(entry)
                if address is None:
                    break  # not an address: the last trusted hop is all we know
                host = str(address)
                if not self.trusts(host):
                    break
            scope["client"] = (host, 0)
        if proto in _SCHEMES:
            scheme = _SCHEMES[proto]
            scope["scheme"] = _WEBSOCKET[scheme] if scope["type"] == "websocket" else scheme


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::ffff:1.2.3.4``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
