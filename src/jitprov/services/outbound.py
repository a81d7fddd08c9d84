"""One guard for every request the server makes on its own: SAML metadata, OIDC discovery,
JWKS, token and userinfo endpoints, the IdP health probe of shared devices, webhooks.

A tenant admin chooses these URLs. Unguarded, they reach whatever the server reaches (loopback
services, the cloud metadata endpoint, the private network), and error texts that differ with
what answered turn the server into a port scanner. The guard is an httpx transport, so no
caller can forget it: when a connection is to be opened it resolves the host, refuses unless
every address it resolves to is public or inside the operator's allowlist
(``JITPROV_OUTBOUND_ALLOW``), and connects to the address it checked, so a second DNS answer
between the check and the connect (rebinding) is never used. A refusal is one uniform error,
raised before any packet leaves: nothing about the destination can be learnt from it.
Redirects are never followed by the server's client; timeouts and size caps stay with each
caller. The same transport sends for an event loop too (:func:`async_twin`): the checks are
the same, and a connect's DNS lookup goes to a worker thread.

The URL keeps its host name: the name is what the connection pool keys kept-alive connections
by, what TLS sends as SNI and checks the certificate against, and what the Host header says.
Only the connect goes to the checked address (a network backend under httpx's pool, told by
the guard which request it connects for). So a kept-alive connection carries requests for the
name it was opened for only, to the address checked when it was opened (no DNS lookup per
request: a lookup can cost milliseconds), and never a request for another name on the same
address (its certificate was checked for the first name only).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeGuard

import anyio
import httpcore
import httpx

from jitprov.services.loop_streams import LoopBackend

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

REFUSED = "the destination is not allowed for server-side requests"
#: request extension of a caller that checked the address itself with a policy of its own
#: (webhooks, whose policy JITPROV_WEBHOOK_ALLOW_PRIVATE may lift): see :func:`checked`
CHECKED = "jitprov_outbound_checked"


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


#: IPv6 ranges whose last 32 bits are an IPv4 address a translator reaches: NAT64's
#: well-known prefix, SIIT's IPv4-translated form, the old IPv4-compatible form
_CARRYING_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"),
                  ipaddress.IPv6Network("::ffff:0:0:0/96"), ipaddress.IPv6Network("::/96"))
#: refused whatever they carry: local-use NAT64 (where its IPv4 part sits depends on a prefix
#: length only the network knows) and the deprecated site-local range (still routed inside
#: some networks)
_REFUSED_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("fec0::/10"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translator or tunnel (NAT64's
    well-known prefix, SIIT, the old IPv4-compatible form, 6to4, Teredo's client): a DNS64
    network's gateway would carry ``64:ff9b::a9fe:a9fe`` to 169.254.169.254."""
    if any(address in network for network in _CARRYING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


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
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return self.permits(address.ipv4_mapped)
            if any(address in network for network in _REFUSED_V6):
                return False
            embedded = _embedded_ipv4(address)
            if embedded is not None and not self.permits(embedded):
                return False
        return address.is_global and not address.is_multicast

    def destination(self, host: str, port: int) -> str:
        """The address to connect to for ``host``: every address it resolves to must be
        permitted. Raises OutboundRefused (the same text whatever the reason)."""
        addresses: list[Address] = []
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0])
                         for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            pass  # refused below, outside the handler: the resolver's text goes nowhere
        if not addresses or not all(self.permits(a) for a in addresses):
            raise OutboundRefused(REFUSED)
        return str(addresses[0])


@dataclass(frozen=True)
class _Pin:
    """The request being sent in this thread: where a connect for it may go."""

    host: str  # as the connection pool connects to it, and as resolved (see host_of)
    port: int
    policy: OutboundPolicy | None  # None: ``address`` was checked by the caller
    address: str = ""

    def address_now(self) -> str:
        """The address to connect to: the caller's, or the guard's policy's check of the
        name's resolution made at this call (raises OutboundRefused)."""
        if self.policy is None:
            return self.address
        return self.policy.destination(self.host, self.port)


_PIN: ContextVar[_Pin | None] = ContextVar("jitprov_outbound_pin", default=None)


def pinned() -> tuple[str, str] | None:
    """(host, address) a connection opened now for the request being sent in this thread goes
    to: the address its caller checked, or the host resolved and checked by the guard's policy
    at this call (raises OutboundRefused). None outside a guarded request. The guard's network
    backend calls it at each connect; a test's MockTransport calls it where a connect would
    be."""
    pin = _PIN.get()
    return None if pin is None else (pin.host, pin.address_now())


def host_of(url: str | httpx.URL) -> str:
    """The host as the connection pool, TLS and the Host header name it (IDNA-encoded by
    httpx): what the guard resolves too, so one name is checked and spoken to."""
    return (url if isinstance(url, httpx.URL) else httpx.URL(url)).raw_host.decode("ascii")


def checked(url: str, address: str) -> dict[str, object]:
    """Request extensions of a caller that checked ``address`` for ``url``'s host under a
    policy of its own (webhooks): the guard connects there, for that host only."""
    return {CHECKED: (host_of(url), address)}


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting a host name only to the address checked for it
    (:func:`pinned`) in the request at hand; any other connect is refused."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host:
            raise OutboundRefused(REFUSED)
        return self._inner.connect_tcp(pin.address_now(), port, timeout, local_address,
                                       socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                            ) -> httpcore.NetworkStream:
        raise OutboundRefused(REFUSED)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncPinnedBackend(httpcore.AsyncNetworkBackend):
    """:class:`_PinnedBackend` for an event loop: the same rule; the name's resolution (a
    blocking call) runs in a worker thread."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host:
            raise OutboundRefused(REFUSED)
        address = (pin.address if pin.policy is None
                   else await anyio.to_thread.run_sync(pin.address_now))
        return await self._inner.connect_tcp(address, port, timeout, local_address,
                                             socket_options)

    async def connect_unix_socket(
            self, path: str, timeout: float | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(REFUSED)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _connect_pinned(transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport) -> None:
    """Put the pinning backend under ``transport``'s connection pool. httpx takes no network
    backend of its own, so this reaches its pool (httpcore's, a documented parameter there);
    a pool of another shape fails here, at startup, rather than connecting by name. An event
    loop's pool connects through asyncio's streams (:mod:`jitprov.services.loop_streams`)
    rather than anyio's, which cost an awaited exchange an eighth of its CPU."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.ConnectionPool) and backend is not None:
        if not isinstance(backend, _PinnedBackend):
            pool._network_backend = _PinnedBackend(backend)
    elif isinstance(pool, httpcore.AsyncConnectionPool) and backend is not None:
        if not isinstance(backend, _AsyncPinnedBackend):  # asyncio's streams, not anyio's
            pool._network_backend = _AsyncPinnedBackend(LoopBackend())
    else:
        raise RuntimeError("the outbound guard cannot pin this httpx transport's connections")


def _checked_for(value: object, host: str) -> TypeGuard[tuple[str, str]]:
    """Whether a CHECKED extension names ``host`` and an IP address (see :func:`checked`)."""
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] == host):
        return False
    try:
        ipaddress.ip_address(value[1])
    except (TypeError, ValueError):
        return False
    return True


class GuardedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that sends only where ``policy`` permits, connected to the checked
    address. Requests a caller checked under a policy of its own (:data:`CHECKED`) go through
    a connection pool of their own: a connection one policy allowed (a webhook's private
    address) is never reused for a request the other policy checked. ``verify`` is the TLS
    trust (httpx's); ``inner``, for tests, replaces both pools (a MockTransport reads the
    address with :func:`pinned`).

    It sends for an httpx.AsyncClient too, through pools of their own: one pair per event
    loop, made on the loop's first request and closed by :meth:`aclose` from that loop (the
    app's shutdown): a connection belongs to the loop that opened it; a server's worker has
    one loop."""

    def __init__(self, policy: OutboundPolicy, inner: httpx.BaseTransport | None = None, *,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.policy = policy
        self._verify = verify
        if inner is None:
            trust = self._trust()
            inner = httpx.HTTPTransport(verify=trust)
            self._checked: httpx.BaseTransport = httpx.HTTPTransport(verify=trust)
        else:
            self._checked = inner
        self._inner = inner
        for transport in {self._inner, self._checked}:
            if isinstance(transport, httpx.HTTPTransport):
                _connect_pinned(transport)
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncBaseTransport,
                                             httpx.AsyncBaseTransport]] = \
            weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()

    def _trust(self) -> ssl.SSLContext:
        """The TLS trust, made once (loading the CA store costs milliseconds)."""
        if not isinstance(self._verify, ssl.SSLContext):
            self._verify = httpx.create_ssl_context(verify=self._verify)
        return self._verify

    def _route(self, request: httpx.Request) -> tuple[_Pin, bool]:
        """The pin for ``request`` and whether it goes through the pool of callers' checked
        addresses. Raises OutboundRefused."""
        url = request.url
        host = host_of(url)
        if url.scheme not in ("http", "https") or not host:
            raise OutboundRefused(REFUSED)
        port = url.port if url.port is not None else 443 if url.scheme == "https" else 80
        if not 0 < port < 65536:  # httpx takes any number; a connect would fail unreadably
            raise OutboundRefused(REFUSED)
        by_caller = request.extensions.get(CHECKED)
        if by_caller is None:
            return _Pin(host, port, self.policy), False
        if _checked_for(by_caller, host):
            return _Pin(host, port, None, by_caller[1]), True
        raise OutboundRefused(REFUSED)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pin, by_caller = self._route(request)
        token = _PIN.set(pin)
        try:
            return (self._checked if by_caller else self._inner).handle_request(request)
        finally:
            _PIN.reset(token)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pin, by_caller = self._route(request)
        by_guard, by_callers = self._async_pools()
        token = _PIN.set(pin)
        try:
            return await (by_callers if by_caller else by_guard).handle_async_request(request)
        finally:
            _PIN.reset(token)

    def _async_pools(self) -> tuple[httpx.AsyncBaseTransport, httpx.AsyncBaseTransport]:
        """The running loop's pools (the guard's, the callers'), made on its first request."""
        loop = asyncio.get_running_loop()
        pools = self._async.get(loop)
        if pools is not None:
            return pools
        if isinstance(self._inner, httpx.HTTPTransport):
            trust = self._trust()
            by_guard = httpx.AsyncHTTPTransport(verify=trust)
            by_caller = httpx.AsyncHTTPTransport(verify=trust)
            _connect_pinned(by_guard)
            _connect_pinned(by_caller)
            pools = (by_guard, by_caller)
        elif isinstance(self._inner, httpx.AsyncBaseTransport):  # a test's MockTransport
            pools = (self._inner, self._inner)
        else:
            raise RuntimeError("this outbound transport cannot send for an event loop")
        with self._async_lock:  # two loops' first requests at once: each keeps its own
            return self._async.setdefault(loop, pools)

    def close(self) -> None:
        self._inner.close()
        if self._checked is not self._inner:
            self._checked.close()

    async def aclose(self) -> None:
        """Close the running loop's pools (a server's worker, stopping); another loop's stay."""
        with self._async_lock:
            pools = self._async.pop(asyncio.get_running_loop(), None)
        for pool in set(pools or ()):
            await pool.aclose()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _Cookieless:
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


class _CookielessClient(_Cookieless, httpx.Client):
    pass


class _CookielessAsyncClient(_Cookieless, httpx.AsyncClient):
    pass


def guarded_client(policy: OutboundPolicy, *, timeout: float = 10.0) -> httpx.Client:
    """The server's client for every outbound request: guarded, redirects not followed, no
    cookies kept, answers asked for uncompressed (a size cap counts decoded bytes: a small
    compressed answer could inflate past it within one chunk)."""
    return _CookielessClient(transport=GuardedTransport(policy),
                             timeout=httpx.Timeout(timeout), follow_redirects=False,
                             headers={"Accept-Encoding": "identity"})


def async_twin(client: httpx.Client) -> httpx.AsyncClient | None:
    """An httpx.AsyncClient that sends through ``client``'s transport (the guard, with its
    policy), with its timeout and headers, following no redirect and keeping no cookie; None
    when that transport cannot send for an event loop."""
    transport = getattr(client, "_transport", None)  # httpx keeps the client's transport here
    if not isinstance(transport, httpx.AsyncBaseTransport):
        return None
    return _CookielessAsyncClient(transport=transport, timeout=client.timeout,
                                  follow_redirects=False, headers=client.headers)


def policy_from(allow: Iterable[str], *, allow_private: bool) -> OutboundPolicy:
    return OutboundPolicy(allow=parse_allowlist(",".join(allow)), allow_private=allow_private)
