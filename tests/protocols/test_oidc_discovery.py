"""Provider metadata (OpenID Connect Discovery 1.0 section 4): fetched, checked, cached."""

from __future__ import annotations

import pytest

from jitprov.protocols.oidc import OidcError, build_authorization_request
from tests.protocols.oidc_fakes import ISSUER


def test_fetches_the_discovery_document_once_within_its_ttl(providers, idp, clock):
    first = providers.metadata(ISSUER, ttl=3600)
    clock.advance(3599)
    second = providers.metadata(ISSUER, ttl=3600)

    assert (first, 1) == (second, idp.count("discovery"))


def test_refetches_the_discovery_document_after_its_ttl(providers, idp, clock):
    providers.metadata(ISSUER, ttl=3600)
    clock.advance(3600)
    idp.discovery["token_endpoint"] = "https://idp.example/v2/token"

    refreshed = providers.metadata(ISSUER, ttl=3600)

    assert ("https://idp.example/v2/token", 2) == (refreshed.token_endpoint,
                                                   idp.count("discovery"))


def test_reads_the_endpoints_of_the_discovery_document(providers):
    metadata = providers.metadata(ISSUER)

    assert ("https://idp.example/authorize", "https://idp.example/token",
            "https://idp.example/jwks", "https://idp.example/userinfo", ("S256",)) == (
        metadata.authorization_endpoint, metadata.token_endpoint, metadata.jwks_uri,
        metadata.userinfo_endpoint, metadata.code_challenge_methods)


@pytest.mark.parametrize("named", ["https://evil.example", "https://idp.example/",
                                   "https://IDP.example", None])
def test_refuses_a_discovery_document_naming_another_issuer(providers, idp, named):
    idp.discovery["issuer"] = named

    with pytest.raises(OidcError) as caught:
        providers.metadata(ISSUER)

    assert "discovery_invalid" == caught.value.code


def test_does_not_cache_a_refused_discovery_document(providers, idp):
    idp.discovery["issuer"] = "https://evil.example"
    with pytest.raises(OidcError):
        providers.metadata(ISSUER)
    idp.discovery["issuer"] = ISSUER

    assert ISSUER == providers.metadata(ISSUER).issuer


def test_reports_an_unreachable_provider(providers, idp):
    idp.unreachable = True

    with pytest.raises(OidcError) as caught:
        providers.metadata(ISSUER)

    assert "idp_unreachable" == caught.value.code


def test_reports_a_provider_answering_an_error_status(providers, idp):
    idp.failing["discovery"] = 503

    with pytest.raises(OidcError) as caught:
        providers.metadata(ISSUER)

    assert "idp_bad_response" == caught.value.code


def test_refuses_a_provider_without_pkce_s256(providers, idp, config):
    idp.discovery["code_challenge_methods_supported"] = ["plain"]
    metadata = providers.metadata(ISSUER)

    with pytest.raises(OidcError) as caught:
        build_authorization_request(metadata, config, state="st",
                                    redirect_uri="https://app.example/cb")

    assert "discovery_invalid" == caught.value.code
