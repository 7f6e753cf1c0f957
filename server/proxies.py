"""The one owner of "the client address": who sent a request, through the configured chain
of trusted proxies (``BUILDPEER_TRUSTED_PROXIES``, CIDRs).

In AWS a request reaches a task as viewer → CloudFront → ALB → task. The task's TCP peer is
the ALB; the ALB appends the address it saw (a CloudFront edge) to ``X-Forwarded-For``;
CloudFront names the viewer in ``CloudFront-Viewer-Address`` (``ip:port``). So, when the
peer is a trusted proxy:

1. ``CloudFront-Viewer-Address`` names the client (the ALB only forwards requests that carry
   CloudFront's origin secret header, so nobody else can set it);
2. otherwise ``X-Forwarded-For`` is walked from the right, skipping trusted hops; the first
   untrusted address is the client (entries further left are whatever the client wrote);
3. ``X-Forwarded-Proto`` gives the scheme the client used.

A peer outside the chain is the client itself and its headers are ignored, so a forged
``X-Forwarded-For`` buys nothing. uvicorn's own proxy-header handling is off
(:mod:`cli.serve`): this middleware rewrites ``scope["client"]`` (and the scheme) once, for
every later reader (rate limits, logs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

VIEWER_ADDRESS = b"cloudfront-viewer-address"
FORWARDED_FOR = b"x-forwarded-for"
FORWARDED_PROTO = b"x-forwarded-proto"


def _address(raw: str) -> Address | None:
    value = raw.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _viewer_address(raw: str) -> Address | None:
    """``CloudFront-Viewer-Address``: ``198.51.100.10:46532`` or ``2001:db8::1:46532``."""
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    return _address(host)


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def trusts(self, address: Address | None) -> bool:
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == n.version and address in n for n in self.networks)

    def client(self, peer: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, str | None]:
        """(client address, scheme the client used or None) for a request from ``peer``."""
        if not self.networks or not self.trusts(_address(peer)):
            return peer, None
        viewer: str | None = None
        forwarded: list[str] = []
        proto: str | None = None
        for name, value in headers:
            if name == VIEWER_ADDRESS:
                viewer = value.decode("latin-1")
            elif name == FORWARDED_FOR:
                forwarded += value.decode("latin-1").split(",")
            elif name == FORWARDED_PROTO:
                proto = value.decode("latin-1").split(",")[-1].strip().lower() or None
        scheme = proto if proto in ("http", "https") else None
        if viewer is not None:
            address = _viewer_address(viewer)
            if address is not None:
                return str(address), scheme
        client = peer
        for entry in reversed(forwarded):
            address = _address(entry)
            if address is None:
                break  # a trusted hop never writes garbage: stop at the last good one
            client = str(address)
            if not self.trusts(address):
                break
        return client, scheme


class ClientAddressMiddleware:
    """Outermost middleware: ``scope["client"]`` becomes the client the proxy chain names."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str] = ()) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies.networks and scope.get("client"):
            peer, port = scope["client"]
            client, scheme = self.proxies.client(peer, scope["headers"])
            if client != peer or scheme:
                scope = dict(scope)
                scope["client"] = (client, port if client == peer else 0)
                if scheme:
                    secure = scheme == "https"
                    if scope["type"] == "websocket":
                        scope["scheme"] = "wss" if secure else "ws"
                    else:
                        scope["scheme"] = scheme
        await self.app(scope, receive, send)
