"""The outbound guard: which addresses server-side requests may reach, and that a request is
sent to the address that was checked."""

from __future__ import annotations

import http.server
import ipaddress
import re
import threading

import httpx
import pytest

from jitprov.services.outbound import (
    REFUSED,
    GuardedTransport,
    OutboundPolicy,
    OutboundRefused,
    parse_allowlist,
)

PRIVATE = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
           "100.64.0.1", "0.0.0.0",  # noqa: S104 - an address under test
           "224.0.0.1", "::1", "fe80::1", "fc00::1",
           "::ffff:127.0.0.1", "::ffff:169.254.169.254"]


@pytest.mark.parametrize("address", PRIVATE)
def test_local_private_and_reserved_addresses_are_refused(address: str) -> None:
    assert not OutboundPolicy().permits(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
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


def test_the_request_goes_to_the_checked_address_with_the_name_kept() -> None:
    """The host is resolved once; a second, different DNS answer (rebinding) is never used."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    seen: list[httpx.Request] = []

    def inner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    policy = OutboundPolicy(resolver=lambda host, port: next(answers))
    client = httpx.Client(transport=GuardedTransport(policy, httpx.MockTransport(inner)))
    assert client.get("https://idp.example:8443/.well-known/openid-configuration"
                      ).json() == {"ok": True}
    sent = seen[0]
    assert sent.url.host == "93.184.215.14" and sent.url.port == 8443
    assert sent.headers["host"] == "idp.example:8443"
    assert sent.extensions["sni_hostname"] == "idp.example"
    assert len(seen) == 1


def test_a_refused_destination_never_reaches_the_network() -> None:
    def inner(request: httpx.Request) -> httpx.Response:
        raise AssertionError("sent")

    policy = OutboundPolicy(resolver=lambda host, port: ["169.254.169.254"])
    client = httpx.Client(transport=GuardedTransport(policy, httpx.MockTransport(inner)))
    with pytest.raises(httpx.HTTPError, match=REFUSED):
        client.get("http://metadata.internal/latest/meta-data/")


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

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie"))
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
        assert seen == [None, None, None]
        assert len(ctx.http.cookies) == 0
        ctx.http.close()
    finally:
        server.shutdown()
        server.server_close()
