"""JitprovWsgiMiddleware, called as a WSGI server calls an application."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

from jitprov_client import JitprovWsgiMiddleware
from jitprov_stand_in import Issuer


def whoami(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    who = environ["jitprov.identity"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [(who.email if who else "nobody").encode()]


def call(app: Any, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], body


def test_required_refuses_without_a_valid_token_and_admits_with_one(issuer: Issuer) -> None:
    app = JitprovWsgiMiddleware(whoami, issuer.verifier(), required=True)
    assert call(app)[0] == "401 Unauthorized"
    assert call(app, {"X-Jitprov-Email": "boss@hospital.example"})[0] == "401 Unauthorized"
    assert call(app, {"X-Jitprov-Token": issuer.token(aud="x")})[0] == "401 Unauthorized"
    assert call(app, {"X-Jitprov-Token": issuer.token()}) == ("200 OK", b"ana@hospital.example")


def test_optional_passes_the_request_on_with_no_identity(issuer: Issuer) -> None:
    app = JitprovWsgiMiddleware(whoami, issuer.verifier())
    assert call(app) == ("200 OK", b"nobody")


def test_the_header_name_follows_the_proxy(issuer: Issuer) -> None:
    app = JitprovWsgiMiddleware(whoami, issuer.verifier(), required=True,
                                header="X-Auth-Token")
    assert call(app, {"X-Jitprov-Token": issuer.token()})[0] == "401 Unauthorized"
    assert call(app, {"X-Auth-Token": issuer.token()})[0] == "200 OK"


def test_a_token_header_given_twice_is_no_token(issuer: Issuer) -> None:
    """WSGI servers merge a repeated header with a comma: the client's value must not win."""
    app = JitprovWsgiMiddleware(whoami, issuer.verifier(), required=True)
    token = issuer.token()
    assert call(app, {"X-Jitprov-Token": token})[0] == "200 OK"
    assert call(app, {"X-Jitprov-Token": f"{token},{token}"})[0] == "401 Unauthorized"
    assert call(app, {"X-Jitprov-Token": f"{issuer.token(sub='someone-else')}, {token}"})[0] \
        == "401 Unauthorized"
