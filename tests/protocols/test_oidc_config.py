"""``OidcConfig.parse``: what ``connection add-oidc`` refuses, naming the field."""

from __future__ import annotations

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.protocols.oidc import OidcConfig
from tests.protocols.oidc_fakes import CLIENT_ID


def parse_error(**fields: object) -> str:
    with pytest.raises(InvalidInput) as caught:
        OidcConfig.parse({"issuer": "https://idp.example", "client_id": CLIENT_ID, **fields})
    return str(caught.value)


def test_parses_a_minimal_configuration_with_safe_defaults():
    config = OidcConfig.parse({"issuer": "https://idp.example", "client_id": CLIENT_ID})

    assert ("https://idp.example", ("openid", "email", "profile"), ("RS256", "PS256", "ES256"),
            "client_secret_basic") == (config.issuer, config.scopes, config.id_token_algs,
                                       config.token_auth_method)


@pytest.mark.parametrize("issuer", ["http://idp.example", "ftp://idp.example", "idp.example",
                                    "javascript:alert(1)"])
def test_refuses_an_issuer_that_is_not_https(issuer):
    assert "issuer" in parse_error(issuer=issuer)


@pytest.mark.parametrize("issuer", ["http://localhost.evil.example",
                                    "http://127.0.0.1.evil.example",
                                    "http://localhost@evil.example"])
def test_refuses_an_http_issuer_that_only_starts_like_a_loopback_host(issuer):
    assert "issuer" in parse_error(issuer=issuer)


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:5556/dex", "http://localhost:8080",
                                    "http://[::1]:8080"])
def test_accepts_an_http_issuer_on_loopback(issuer):
    assert issuer == OidcConfig.parse({"issuer": issuer, "client_id": CLIENT_ID}).issuer


def test_refuses_scopes_without_openid():
    assert "scopes" in parse_error(scopes=["email", "profile"])


@pytest.mark.parametrize("algs", [["HS256"], ["RS256", "HS256"], ["none"], ["RS256", "none"],
                                  []])
def test_refuses_id_token_algorithms_that_are_symmetric_or_none(algs):
    assert "id_token_algs" in parse_error(id_token_algs=algs)
