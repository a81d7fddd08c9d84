"""The outbound guard: which addresses server-side requests may reach, and that a request is
sent to the address that was checked, over TLS checked for the name."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import re
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import uvloop

from jitprov.services.loop_streams import LoopBackend, LoopStream
from jitprov.services.outbound import (
    CHECKED,
    REFUSED,
    GuardedTransport,
    OutboundPolicy,
    OutboundRefused,
    async_twin,
    checked,
    parse_allowlist,
    pinned,
)
from tests.tls import issue

PRIVATE = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
           "100.64.0.1", "0.0.0.0",  # noqa: S104 - an address under test
           "224.0.0.1", "::1", "fe80::1", "fc00::1",
           "::ffff:127.0.0.1", "::ffff:169.254.169.254",
           # IPv6 that a translator or tunnel carries to a private IPv4 address: NAT64's
           # well-known prefix, its local-use one, 6to4, the IPv4-compatible form
           "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::5db8:d70e", "2002:a9fe:a9fe::1",
           "2002:7f00:1::", "::127.0.0.1", "::10.0.0.1", "::ffff:0:7f00:1", "::ffff:0:a00:1",
           "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, its client 10.0.0.1
           "fec0::1"]


@pytest.mark.parametrize("address", PRIVATE)
def test_local_private_and_reserved_addresses_are_refused(address: str) -> None:
    assert not OutboundPolicy().permits(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                     "64:ff9b::5db8:d70e", "2002:5db8:d70e::1"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert OutboundPolicy().permits(ipaddress.ip_address(address))


def test_the_allowlist_and_dev_mode_lift_the_refusal() -> None:
    allow = OutboundPolicy(allow=parse_allowlist("127.0.0.1/32, 10.0.0.0/8"))
    assert allow.permits(ipaddress.ip_address("127.0.0.1"))
    assert allow.permits(ipaddress.ip_address("10.9.9.9"))
    assert not allow.permits(ipaddress.ip_address("127.0.0.2"))
    assert not allow.permits(ipaddress.ip_address("169.254.169.254"))
    assert OutboundPolicy(allow_private=True).permits(ipaddress.ip_address("169.254.169.254"))


def test_a_bad_allowlist_entry_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_allowlist("127.0.0.1, 10.0.0.0/33")


def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    policy = OutboundPolicy(resolver=lambda host, port: ["93.184.215.14", "127.0.0.1"])
    with pytest.raises(OutboundRefused, match=REFUSED):
        policy.destination("idp.example", 443)


def test_an_unresolvable_host_gets_the_same_refusal() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")
    with pytest.raises(OutboundRefused) as refused:
        OutboundPolicy(resolver=fails).destination("nowhere.invalid", 443)
    assert str(refused.value) == REFUSED
    # nothing of the resolver's answer rides along (a traceback or a log would show it)
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_the_request_goes_to_the_checked_address_with_the_name_kept() -> None:
    """The host is resolved once, where a connect would be (the mock asks :func:`pinned`); a
    second, different DNS answer (rebinding) is never used. The URL and the Host header keep
    the name."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    seen: list[tuple[httpx.Request, tuple[str, str] | None]] = []

    def inner(request: httpx.Request) -> httpx.Response:
        seen.append((request, pinned()))
        return httpx.Response(200, json={"ok": True})

    policy = OutboundPolicy(resolver=lambda host, port: next(answers))
    client = httpx.Client(transport=GuardedTransport(policy, httpx.MockTransport(inner)))
    assert client.get("https://idp.example:8443/.well-known/openid-configuration"
                      ).json() == {"ok": True}
    [(sent, pin)] = seen
    assert pin == ("idp.example", "93.184.215.14")
    assert (sent.url.host, sent.url.port) == ("idp.example", 8443)
    assert sent.headers["host"] == "idp.example:8443"
    assert pinned() is None  # only while the request is sent


class TlsServer:
    """An https server on 127.0.0.1 whose certificate (from a CA of the test's own) names
    ``names`` only; it records the SNI of each handshake and the Host of each request."""

    def __init__(self, tmp: Path, names: list[str], *, keep_alive: bool = True,
                 body: bytes = b"ok") -> None:
        issued = issue(tmp, names)
        self.client_context = issued.client_context()
        self.handshakes: list[str | None] = []
        self.hosts: list[str] = []
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive: a pooled connection may be reused

            def do_GET(self) -> None:
                served.hosts.append(self.headers["Host"])
                self.send_response(200)
                if not keep_alive:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        context = issued.server_context
        context.sni_callback = lambda _sock, name, _ctx: self.handshakes.append(name)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, resolved: list[str], answer: str = "127.0.0.1", *,
               allow: str | None = None) -> httpx.Client:
        """The guard's client trusting this server's CA, every name resolved by a stub
        resolver (recorded in ``resolved``) to ``answer``; the allowlist is ``allow``
        (default: that answer)."""
        def resolve(host: str, _port: int) -> list[str]:
            resolved.append(host)
            return [answer]

        allowed = f"{answer}/32" if allow is None else allow
        policy = OutboundPolicy(allow=parse_allowlist(allowed), resolver=resolve)
        return httpx.Client(transport=GuardedTransport(policy, verify=self.client_context))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path, ["idp.test"])
    yield server
    server.close()


def test_a_name_is_connected_to_its_checked_address_and_tls_checks_the_name(
        tls_server: TlsServer) -> None:
    """The name resolves only through the guard's resolver (nothing else knows
    ``idp.test``): the connect went to the checked address, SNI and Host named the host, the
    certificate was checked against it, and the kept-alive connection served the next
    request (one handshake, one DNS lookup)."""
    resolved: list[str] = []
    with tls_server.client(resolved) as client:
        for _ in range(2):
            answer = client.get(f"https://idp.test:{tls_server.port}/jwks")
            assert (answer.status_code, answer.text) == (200, "ok")
    assert tls_server.handshakes == ["idp.test"]
    assert tls_server.hosts == [f"idp.test:{tls_server.port}"] * 2
    assert resolved == ["idp.test"]


def test_every_new_connection_is_checked_again(tmp_path: Path) -> None:
    """The server closes each connection: the next request resolves again, and a name that
    now resolves to a private address is refused before anything is sent."""
    server = TlsServer(tmp_path, ["idp.test"], keep_alive=False)
    answers = iter(["127.0.0.1", "10.0.0.7"])
    policy = OutboundPolicy(allow=parse_allowlist("127.0.0.1/32"),
                            resolver=lambda _host, _port: [next(answers)])
    try:
        with httpx.Client(transport=GuardedTransport(policy,
                                                     verify=server.client_context)) as client:
            assert client.get(f"https://idp.test:{server.port}/").status_code == 200
            with pytest.raises(OutboundRefused, match=REFUSED):
                client.get(f"https://idp.test:{server.port}/")
    finally:
        server.close()
    assert server.handshakes == ["idp.test"]


def test_a_refused_destination_never_reaches_the_network(tls_server: TlsServer) -> None:
    """Loopback, not allowlisted: refused with the uniform error, no handshake begun."""
    with tls_server.client([], allow="") as client, \
            pytest.raises(OutboundRefused, match=f"^{REFUSED}$"):
        client.get(f"https://idp.test:{tls_server.port}/")
    assert tls_server.handshakes == [] and tls_server.hosts == []


def test_a_connection_made_for_one_name_never_carries_another_names_request(
        tls_server: TlsServer) -> None:
    """Two names on one address (shared hosting, or a DNS answer an attacker controls): the
    second name gets a connection of its own, whose certificate is checked for it, and is
    refused here (the certificate names ``idp.test`` only) instead of riding on the first
    name's kept-alive connection."""
    with tls_server.client([]) as client:
        assert client.get(f"https://idp.test:{tls_server.port}/").status_code == 200
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.get(f"https://other.test:{tls_server.port}/")
        assert client.get(f"https://idp.test:{tls_server.port}/").status_code == 200
    assert tls_server.handshakes == ["idp.test", "other.test"]
    assert tls_server.hosts == [f"idp.test:{tls_server.port}"] * 2


def test_two_names_on_one_address_each_get_their_own_connection(tmp_path: Path) -> None:
    server = TlsServer(tmp_path, ["a.test", "b.test"])
    try:
        with server.client([]) as client:
            for name in ("a.test", "b.test", "a.test", "b.test"):
                assert client.get(f"https://{name}:{server.port}/").status_code == 200
    finally:
        server.close()
    assert sorted(server.handshakes) == ["a.test", "b.test"]
    assert server.hosts == [f"{n}:{server.port}" for n in ("a.test", "b.test") * 2]


def test_a_connection_a_callers_own_policy_allowed_is_never_reused_under_the_guards(
        tmp_path: Path) -> None:
    """A webhook checks its address under its own policy (which may allow private ones) and
    passes it as CHECKED. A later request to the same name under the guard's policy, which
    resolves it elsewhere, opens its own connection to that address (nothing listens
    there: refused) instead of riding on the webhook's kept-alive one to 127.0.0.1."""
    server = TlsServer(tmp_path, ["hooks.test"])
    url = f"https://hooks.test:{server.port}/"
    try:
        with server.client([], answer="127.0.0.2") as client:
            assert client.get(url, extensions=checked(url, "127.0.0.1")).status_code == 200
            with pytest.raises(httpx.ConnectError):
                client.get(url)
            assert client.get(url, extensions=checked(url, "127.0.0.1")).status_code == 200
    finally:
        server.close()
    assert server.handshakes == ["hooks.test"]
    assert len(server.hosts) == 2


def test_a_callers_checked_address_serves_the_host_it_was_checked_for_only(
        tls_server: TlsServer) -> None:
    """A CHECKED extension names its host: carried to another URL (a redirect would copy it),
    or not an address, it is refused."""
    url = f"https://idp.test:{tls_server.port}/"
    with tls_server.client([], allow="") as client:
        for extensions in (checked(f"https://other.test:{tls_server.port}/", "127.0.0.1"),
                           {CHECKED: ("idp.test", "localhost")}, {CHECKED: "127.0.0.1"}):
            with pytest.raises(OutboundRefused, match=REFUSED):
                client.get(url, extensions=extensions)
        assert client.get(url, extensions=checked(url, "127.0.0.1")).status_code == 200
    assert tls_server.handshakes == ["idp.test"]


def test_an_international_name_is_resolved_as_it_is_spoken_to() -> None:
    """``faß`` is ``xn--fa-hia`` in IDNA 2008 (httpx, TLS, Host) but ``fass`` in the IDNA 2003
    the operating system's resolver would apply to the Unicode name: the guard resolves the
    encoded name, so the address checked is the name's that TLS and Host speak to."""
    resolved: list[str] = []

    def resolve(host: str, _port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.215.14"]

    seen: list[tuple[str, str] | None] = []

    def inner(request: httpx.Request) -> httpx.Response:
        seen.append(pinned())
        return httpx.Response(204)

    transport = GuardedTransport(OutboundPolicy(resolver=resolve), httpx.MockTransport(inner))
    httpx.Client(transport=transport).get("https://faß.example/")
    assert resolved == ["xn--fa-hia.example"]
    assert seen == [("xn--fa-hia.example", "93.184.215.14")]


def test_a_connect_for_another_host_than_the_requests_is_refused(
        tls_server: TlsServer) -> None:
    """The backend under the pool connects only the host the guard was told about."""
    from jitprov.services.outbound import _PIN, _Pin

    inner = httpx.HTTPTransport(verify=tls_server.client_context)
    GuardedTransport(OutboundPolicy(allow_private=True), inner)
    token = _PIN.set(_Pin("other.test", tls_server.port, None, "127.0.0.1"))
    try:
        with httpx.Client(transport=inner) as client, \
                pytest.raises(OutboundRefused, match=REFUSED):
            client.get(f"https://idp.test:{tls_server.port}/")
    finally:
        _PIN.reset(token)
    assert tls_server.handshakes == []


def test_a_connect_outside_the_guard_is_refused(tls_server: TlsServer) -> None:
    """The transport under the guard connects only where the guard pinned: used on its own
    (no check), it refuses before any packet leaves."""
    inner = httpx.HTTPTransport(verify=tls_server.client_context)
    GuardedTransport(OutboundPolicy(allow_private=True), inner)
    with httpx.Client(transport=inner) as client, pytest.raises(OutboundRefused, match=REFUSED):
        client.get(f"https://idp.test:{tls_server.port}/")
    assert tls_server.handshakes == []


def test_the_composition_root_guards_the_servers_client() -> None:
    """What ``serve`` and the CLI build: a guarded client that follows no redirect, private
    addresses allowed only in ``jitprov dev``."""
    from jitprov.services.context import build_context
    from jitprov.settings import Settings

    class NoDatabase:
        pass

    for dev_mode in (False, True):
        settings = Settings(secret_key="k", dev_mode=dev_mode, outbound_allow=("10.0.0.0/8",))
        ctx = build_context(settings, NoDatabase())  # type: ignore[arg-type]
        assert isinstance(ctx.http._transport, GuardedTransport)
        assert ctx.http.follow_redirects is False
        assert ctx.http._transport.policy == ctx.outbound
        assert ctx.outbound.allow_private is dev_mode
        assert ctx.outbound.permits(ipaddress.ip_address("10.2.3.4"))


def test_the_servers_client_keeps_no_cookie_from_one_answer_for_the_next() -> None:
    """The server's client is shared by every tenant: a cookie one IdP sets (a load
    balancer's, say) is not sent with any later request, to that host or another."""
    from jitprov.services.context import build_context
    from jitprov.settings import Settings

    seen: list[str | None] = []
    encodings: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie"))
            encodings.append(self.headers.get("Accept-Encoding"))
            self.send_response(200)
            self.send_header("Set-Cookie", "AWSALB=sticky-to-one-node; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(secret_key="k", outbound_allow=("127.0.0.1/32",))
        ctx = build_context(settings, object())  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{server.server_port}"
        first = ctx.http.get(f"{url}/token")
        assert first.headers["set-cookie"].startswith("AWSALB=")  # the IdP did set one
        ctx.http.get(f"{url}/token")
        ctx.http.get(f"{url}/userinfo")

        async def from_a_loop() -> None:
            assert ctx.http_async is not None
            for path in ("/token", "/userinfo"):
                await ctx.http_async.get(f"{url}{path}")
            await ctx.close_async()

        asyncio.run(from_a_loop())
        assert seen == [None] * 5
        # uncompressed answers asked for, from threads and loops alike (a size cap counts
        # decoded bytes)
        assert encodings == ["identity"] * 5
        assert len(ctx.http.cookies) == 0
        ctx.http.close()
    finally:
        server.shutdown()
        server.server_close()


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _from_a_loop(client: httpx.Client, *urls: str,
                 extensions: dict[str, object] | None = None,
                 run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run,
                 after: Callable[[int], bool] | None = None) -> list[httpx.Response]:
    """GET each of ``urls`` in turn through ``client``'s event-loop twin, in a loop of its
    own (``run``'s: asyncio's, or uvloop's as under ``serve``); after the i-th answer, until
    ``after(i)`` holds (the server did what the test waits for, within 5 s); the loop's
    connections closed after."""
    twin = async_twin(client)
    assert twin is not None

    async def requests() -> list[httpx.Response]:
        try:
            answers = []
            for i, url in enumerate(urls):
                answers.append(await twin.get(url, extensions=extensions))
                if after is not None:
                    async with asyncio.timeout(5):
                        while not after(i):
                            await asyncio.sleep(0.01)
            return answers
        finally:
            await twin.aclose()

    return run(requests())


def test_an_event_loops_request_passes_the_same_guard(tls_server: TlsServer) -> None:
    """Through the event-loop twin of the server's client: the name resolved once, by the
    guard's resolver and off the loop (in a worker thread: a lookup blocks), the connect to
    the checked address, TLS checked for the name, the kept-alive connection reused."""
    resolved: list[str] = []
    lookups_on_the_loop: list[bool] = []

    def resolve(host: str, _port: int) -> list[str]:
        resolved.append(host)
        lookups_on_the_loop.append(_on_a_loop())
        return ["127.0.0.1"]

    policy = OutboundPolicy(allow=parse_allowlist("127.0.0.1/32"), resolver=resolve)
    url = f"https://idp.test:{tls_server.port}/jwks"
    with httpx.Client(transport=GuardedTransport(policy,
                                                 verify=tls_server.client_context)) as client:
        answers = _from_a_loop(client, url, url)
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 2
    assert tls_server.handshakes == ["idp.test"]
    assert resolved == ["idp.test"] and lookups_on_the_loop == [False]


def test_an_event_loops_refused_destination_never_reaches_the_network(
        tls_server: TlsServer) -> None:
    with tls_server.client([], allow="") as client, \
            pytest.raises(OutboundRefused, match=f"^{REFUSED}$"):
        _from_a_loop(client, f"https://idp.test:{tls_server.port}/")
    assert tls_server.handshakes == [] and tls_server.hosts == []


def test_an_event_loops_request_checked_by_its_caller_goes_where_it_was_checked(
        tls_server: TlsServer) -> None:
    """A CHECKED extension works from a loop too (the guard's own policy would refuse), and
    one carried to another host is refused."""
    url = f"https://idp.test:{tls_server.port}/"
    with tls_server.client([], allow="") as client:
        [answer] = _from_a_loop(client, url, extensions=checked(url, "127.0.0.1"))
        assert answer.status_code == 200
        with pytest.raises(OutboundRefused, match=REFUSED):
            _from_a_loop(client, url, extensions=checked(
                f"https://other.test:{tls_server.port}/", "127.0.0.1"))
    assert tls_server.handshakes == ["idp.test"]


def test_each_event_loop_opens_connections_of_its_own(tls_server: TlsServer) -> None:
    """A connection belongs to the loop that opened it: a second loop (a test client's, a
    restarted worker's) opens its own, checked again, and never touches the first's."""
    resolved: list[str] = []
    url = f"https://idp.test:{tls_server.port}/"
    with tls_server.client(resolved) as client:
        for _ in range(2):
            [answer] = _from_a_loop(client, url)
            assert answer.status_code == 200
    assert tls_server.handshakes == ["idp.test"] * 2 and resolved == ["idp.test"] * 2


def test_an_event_loops_connect_outside_the_guard_is_refused(tls_server: TlsServer) -> None:
    """The event loop's pools under the guard connect only where it pinned: used on their
    own (no check), they refuse before any packet leaves."""
    transport = GuardedTransport(OutboundPolicy(allow_private=True),
                                 verify=tls_server.client_context)

    async def around_the_guard() -> None:
        pool, by_caller = transport._async_pools()
        for inner in (pool, by_caller):
            async with httpx.AsyncClient(transport=inner) as client:
                with pytest.raises(OutboundRefused, match=REFUSED):
                    await client.get(f"https://idp.test:{tls_server.port}/")

    asyncio.run(around_the_guard())
    assert tls_server.handshakes == []


def test_only_a_transport_that_sends_for_a_loop_gets_a_twin() -> None:
    """httpx's own transport sends from threads only: no twin, and the server's context
    says so (its callers then hand the work to a thread); the guard's and a test's
    MockTransport have one, made again when the context's client is replaced."""
    from jitprov.services.context import ServiceContext

    assert async_twin(httpx.Client()) is None
    ctx = ServiceContext(db=object(), secretbox=object())  # type: ignore[arg-type]
    assert ctx.http_async is None
    mock = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(204)))
    ctx.http = mock
    twin = ctx.http_async
    assert twin is not None and ctx.http_async is twin
    assert twin.follow_redirects is False and twin.timeout == mock.timeout
    assert asyncio.run(twin.get("https://idp.example/")).status_code == 204


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_a_port_no_socket_can_have_is_refused_before_anything_is_sent(port: int) -> None:
    """httpx takes any port number; a connect to one past 65535 would fail with an error
    no caller expects (an OverflowError, wrapped by anyio on an event loop)."""
    sent: list[str] = []
    transport = GuardedTransport(OutboundPolicy(resolver=lambda _h, _p: ["93.184.215.14"]),
                                 httpx.MockTransport(lambda r: sent.append(str(r.url))
                                                     or httpx.Response(204)))
    url = f"https://idp.example:{port}/token"
    with httpx.Client(transport=transport) as client, \
            pytest.raises(OutboundRefused, match=REFUSED):
        client.get(url)
    with pytest.raises(OutboundRefused, match=REFUSED):
        _from_a_loop(httpx.Client(transport=transport), url)
    assert sent == []


def test_two_event_loops_at_once_each_keep_their_own_connection(
        tls_server: TlsServer) -> None:
    """Two loops in two threads (a test client's beside a server's, say), their requests
    interleaved: each loop opens one connection and keeps it; neither makes the other's
    pools again, and neither touches the other's connection."""
    url = f"https://idp.test:{tls_server.port}/"
    answers: list[int] = []
    with tls_server.client([]) as client:
        twin = async_twin(client)
        assert twin is not None

        async def requests() -> None:
            for _ in range(6):
                answers.append((await twin.get(url)).status_code)
                await asyncio.sleep(0.01)
            await client._transport.aclose()  # type: ignore[attr-defined]

        threads = [threading.Thread(target=asyncio.run, args=(requests(),)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert answers == [200] * 12
    assert tls_server.handshakes == ["idp.test"] * 2


# An event loop's connections are asyncio's own streams (jitprov.services.loop_streams):
# each behaviour httpx relies on, under asyncio's loop and under uvloop's (as ``serve``
# runs), through the server's client's event-loop twin.
LOOPS = [pytest.param(asyncio.run, id="asyncio"), pytest.param(uvloop.run, id="uvloop")]
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


class RawServer:
    """A TCP server on 127.0.0.1 that runs ``serve`` on each connection it accepts, in a
    thread of its own, and counts them."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.served = 0  #: connections ``serve`` returned from and this server closed

        def accept() -> None:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.connections += 1
                threading.Thread(target=self._serve, args=(serve, conn), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def _serve(self, serve: Callable[[socket.socket], None], conn: socket.socket) -> None:
        with conn:
            try:
                serve(conn)
            except OSError:
                pass
        self.served += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """The guard's client, this server's loopback address allowed, every name resolved
        to it."""
        policy = OutboundPolicy(allow=parse_allowlist("127.0.0.1/32"),
                                resolver=lambda _host, _port: ["127.0.0.1"])
        return httpx.Client(transport=GuardedTransport(policy), timeout=timeout)

    def close(self) -> None:
        """Stop listening: the accepting thread is woken (a close alone leaves the socket
        listening under the accept that waits on it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("the client hung up")
        data += chunk


def _until_hung_up(conn: socket.socket) -> None:
    conn.settimeout(5)
    while conn.recv(4096):
        pass


def _answer_and_hang_up(conn: socket.socket) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # as if kept alive


def _never_answer(conn: socket.socket) -> None:
    _read_request(conn)
    threading.Event().wait(5)


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_tls_refuses_a_certificate_for_another_name(
        tls_server: TlsServer, run: Runner) -> None:
    """The connection went to the checked address, the handshake named the host asked
    for, and the certificate, for another name, was refused: httpx's ConnectError, no
    request sent."""
    with tls_server.client([]) as client, pytest.raises(httpx.ConnectError,
                                                        match="certificate"):
        _from_a_loop(client, f"https://other.test:{tls_server.port}/", run=run)
    assert tls_server.handshakes == ["other.test"] and tls_server.hosts == []


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_large_answer_over_tls_arrives_whole(tmp_path: Path,
                                                           run: Runner) -> None:
    """An answer many times the stream's buffer, over TLS: read to its end, twice on one
    kept-alive connection."""
    body = bytes(range(256)) * 4096  # 1 MiB
    server = TlsServer(tmp_path, ["idp.test"], body=body)
    try:
        with server.client([]) as client:
            url = f"https://idp.test:{server.port}/"
            answers = _from_a_loop(client, url, url, run=run)
    finally:
        server.close()
    assert [a.content == body for a in answers] == [True, True]
    assert server.handshakes == ["idp.test"]


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_unanswered_request_times_out(run: Runner) -> None:
    """The client's read timeout holds on the loop: httpx's ReadTimeout."""
    server = RawServer(_never_answer)
    try:
        with server.client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
            _from_a_loop(client, server.url, run=run)
    finally:
        server.close()


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_connect_to_a_closed_port_is_a_connect_error(run: Runner) -> None:
    server = RawServer(_never_answer)
    server.close()  # nothing listens on its port any more
    with server.client() as client, pytest.raises(httpx.ConnectError):
        _from_a_loop(client, server.url, run=run)


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_kept_alive_connection_the_server_closed_is_not_reused(
        run: Runner) -> None:
    """The server hangs up after each answer without saying so: the next request finds the
    pooled connection closed (it reads as readable: the end of the stream) and opens a new
    one, rather than failing on the dead one."""
    server = RawServer(_answer_and_hang_up)
    try:
        with server.client() as client:
            answers = _from_a_loop(client, server.url, server.url, server.url, run=run,
                                   after=lambda i: server.served > i)
    finally:
        server.close()
    assert [a.text for a in answers] == ["ok"] * 3
    assert server.connections == 3


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_kept_alive_connection_a_server_spoke_on_is_not_reused(
        run: Runner) -> None:
    """A server answers, then, the connection idle, sends something unasked (a 408, as
    servers do before they hang up) and keeps it open: the next request goes over a new
    connection and gets its own answer, not those bytes."""
    spoke = threading.Event()

    def serve(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        threading.Event().wait(0.05)
        conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        spoke.set()
        _until_hung_up(conn)

    server = RawServer(serve)
    try:
        with server.client() as client:
            answers = _from_a_loop(client, server.url, server.url, run=run,
                                   after=lambda _: spoke.is_set())
    finally:
        server.close()
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 2
    assert server.connections == 2


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_tls_handshake_unanswered_times_out(run: Runner) -> None:
    """A server that takes the connection and never answers the TLS handshake: httpx's
    ConnectTimeout, within the client's timeout."""
    server = RawServer(_until_hung_up)
    try:
        with server.client(timeout=0.3) as client, pytest.raises(httpx.ConnectTimeout):
            _from_a_loop(client, f"https://idp.test:{server.port}/", run=run)
    finally:
        server.close()
    assert server.connections == 1


@pytest.mark.parametrize("run", LOOPS)
def test_a_loop_stream_written_after_the_server_reset_it_raises_httpcores_write_error(
        run: Runner) -> None:
    """httpcore closes a connection on its WriteError and httpx reports it as one of its
    own; uvloop raises RuntimeError for a write to a connection already reset, asyncio
    fails the drain: both reach httpcore as WriteError."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

    def reset(conn: socket.socket) -> None:
        # Reset only once the client has spoken: a reset sent at accept can reach a busy
        # client before its connect completes, which then fails the connect instead.
        _read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = RawServer(reset)

    async def write_after_reset() -> None:
        stream = await LoopBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
        try:
            await stream.write(request, timeout=5)
            async with asyncio.timeout(5):  # the reset arrives and the transport closes
                while not stream.get_extra_info("is_readable"):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
            with pytest.raises(httpcore.WriteError):
                for _ in range(3):
                    await stream.write(request, timeout=5)
        finally:
            await stream.aclose()

    try:
        run(write_after_reset())
    finally:
        server.close()


@pytest.mark.parametrize("run", LOOPS)
def test_an_event_loops_connections_are_asyncios_streams(tls_server: TlsServer,
                                                         run: Runner) -> None:
    """The twin's pools connect through the guard's own backend on asyncio's streams
    (not anyio's, which cost an awaited exchange an eighth more CPU: bench.code_exchange),
    over TLS too."""
    with tls_server.client([]) as client:
        [answer] = _from_a_loop(client, f"https://idp.test:{tls_server.port}/", run=run)
    stream = answer.extensions["network_stream"]
    assert isinstance(stream, LoopStream)
    assert stream.get_extra_info("ssl_object") is not None
