"""One guard for every request the server makes on its own: SAML metadata, OIDC discovery,
JWKS, token and userinfo endpoints, the IdP health probe of shared devices, webhooks.

A tenant admin chooses these URLs. Unguarded, they reach whatever the server reaches (loopback
services, the cloud metadata endpoint, the private network), and error texts that differ with
what answered turn the server into a port scanner. The guard is an httpx transport, so no
caller can forget it: it resolves the host, refuses unless every address it resolves to is
public or inside the operator's allowlist (``JITPROV_OUTBOUND_ALLOW``), and connects to the
address it checked, so a second DNS answer between the check and the connect (rebinding) is
never used. A refusal is one uniform error, raised before any packet leaves: nothing about the
destination can be learnt from it. Redirects are never followed by the server's client;
timeouts and size caps stay with each caller.

The URL keeps its host name: the name is what the connection pool keys kept-alive connections
by, what TLS sends as SNI and checks the certificate against, and what the Host header says.
Only the connect goes to the checked address (a network backend under httpx's pool, told the
address by the guard for the request at hand). A connection made for one name is therefore
never reused for another that resolves to the same address: its certificate was checked for
the first name only.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore
import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

REFUSED = "the destination is not allowed for server-side requests"
#: request extension of a caller that checked the address itself with a policy of its own
#: (webhooks, whose policy JITPROV_WEBHOOK_ALLOW_PRIVATE may lift): its value is the address
#: to connect to
CHECKED = "jitprov_outbound_checked"

#: (host name as in the URL, checked address) of the request being sent in this thread
_PIN: ContextVar[tuple[str, str] | None] = ContextVar("jitprov_outbound_pin", default=None)


class OutboundRefused(httpx.TransportError):
    """The guard refused the destination (a subclass of httpx's errors, so every caller's
    ``except httpx.HTTPError`` reports it like an unreachable host)."""


def parse_allowlist(text: str) -> tuple[Network, ...]:
    """``127.0.0.1/32, 10.0.0.0/8, ::1`` -> networks. Raises ValueError naming the bad entry."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def _resolve(host: str, port: int) -> Sequence[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses server-side requests may reach: public ones, plus ``allow``;
    ``allow_private`` lifts the check (``jitprov dev`` only)."""

    allow: tuple[Network, ...] = ()
    allow_private: bool = False
    resolver: Resolver = _resolve

    def permits(self, address: Address) -> bool:
        if self.allow_private or any(address in network for network in self.allow):
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:
            return self.permits(mapped)
        return address.is_global and not address.is_multicast

    def destination(self, host: str, port: int) -> str:
        """The address to connect to for ``host``: every address it resolves to must be
        permitted. Raises OutboundRefused (the same text whatever the reason)."""
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0])
                         for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise OutboundRefused(REFUSED) from None
        if not addresses or not all(self.permits(a) for a in addresses):
            raise OutboundRefused(REFUSED)
        return str(addresses[0])


def pinned() -> tuple[str, str] | None:
    """(host name, address) the guard pinned for the request being sent in this thread: what a
    transport under the guard connects to."""
    return _PIN.get()


@contextmanager
def _pinned(host: str, address: str) -> Iterator[None]:
    token = _PIN.set((host, address))
    try:
        yield
    finally:
        _PIN.reset(token)


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting a host name only to the address the guard
    checked for it in the request at hand; any other connect is refused."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        pin = _PIN.get()
        if pin is None or pin[0] != host:
            raise OutboundRefused(REFUSED)
        return self._inner.connect_tcp(pin[1], port, timeout, local_address, socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                            ) -> httpcore.NetworkStream:
        raise OutboundRefused(REFUSED)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _connect_pinned(transport: httpx.HTTPTransport) -> None:
    """Put the pinning backend under ``transport``'s connection pool. httpx takes no network
    backend of its own, so this reaches its pool (httpcore's, a documented parameter there);
    a pool of another shape fails here, at startup, rather than connecting by name."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(pool, httpcore.ConnectionPool) or backend is None:
        raise RuntimeError("the outbound guard cannot pin this httpx transport's connections")
    if not isinstance(backend, _PinnedBackend):
        pool._network_backend = _PinnedBackend(backend)


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that sends only where ``policy`` permits, connected to the checked
    address. Requests a caller checked under a policy of its own (:data:`CHECKED`) go through
    a connection pool of their own: a connection one policy allowed (a webhook's private
    address) is never reused for a request the other policy checked. ``verify`` is the TLS
    trust (httpx's); ``inner``, for tests, replaces both pools (a MockTransport reads the
    address with :func:`pinned`)."""

    def __init__(self, policy: OutboundPolicy, inner: httpx.BaseTransport | None = None, *,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.policy = policy
        if inner is None:
            trust = verify if isinstance(verify, ssl.SSLContext) else \
                httpx.create_ssl_context(verify=verify)
            inner = httpx.HTTPTransport(verify=trust)
            self._checked: httpx.BaseTransport = httpx.HTTPTransport(verify=trust)
        else:
            self._checked = inner
        self._inner = inner
        for transport in {self._inner, self._checked}:
            if isinstance(transport, httpx.HTTPTransport):
                _connect_pinned(transport)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii")
        checked = request.extensions.get(CHECKED)
        if isinstance(checked, str):
            with _pinned(host, checked):
                return self._checked.handle_request(request)
        if url.scheme not in ("http", "https") or not host:
            raise OutboundRefused(REFUSED)
        port = url.port or (443 if url.scheme == "https" else 80)
        address = self.policy.destination(url.host, port)
        with _pinned(host, address):
            return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
        if self._checked is not self._inner:
            self._checked.close()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.Client):
    """An httpx client that neither keeps nor sends cookies. The server's client is shared by
    every tenant and connection: a cookie one IdP's token endpoint sets (a load balancer's
    affinity cookie, say) would otherwise go with the next tenant's requests to that host.
    It also spares each answer the standard library's cookie parsing."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, _cookies: object) -> None:
        pass


def guarded_client(policy: OutboundPolicy, *, timeout: float = 10.0) -> httpx.Client:
    """The server's client for every outbound request: guarded, redirects not followed, no
    cookies kept."""
    return _CookielessClient(transport=GuardedTransport(policy),
                             timeout=httpx.Timeout(timeout), follow_redirects=False)


def policy_from(allow: Iterable[str], *, allow_private: bool) -> OutboundPolicy:
    return OutboundPolicy(allow=parse_allowlist(",".join(allow)), allow_private=allow_private)
