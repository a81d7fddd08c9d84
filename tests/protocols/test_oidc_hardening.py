"""Hardening found in review: key withdrawal, response issuer (RFC 9207), hostile answers."""

from __future__ import annotations

import httpx
import pytest

from jitprov.core.errors import InvalidInput
from jitprov.protocols.oidc import (
    OidcConfig,
    OidcError,
    ProviderMetadata,
    Providers,
    check_response_issuer,
)
from jitprov.protocols.oidc.flow import _check_claims
from jitprov.protocols.oidc.provider import JWKS_TTL, get_json
from tests.protocols.oidc_fakes import (
    CLIENT_ID,
    ISSUER,
    NONCE,
    NOW,
    RSA_KEY,
    FakeClock,
    FakeProvider,
    id_token_claims,
    sign_id_token,
    validate,
)

ENTRA = "https://login.microsoftonline.com/{tenantid}/v2.0"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_a_key_withdrawn_by_the_provider_stops_verifying_within_a_day(
        idp: FakeProvider, providers: Providers, config: OidcConfig, clock: FakeClock) -> None:
    token = sign_id_token(id_token_claims())
    assert validate(token, providers, config)["sub"] == id_token_claims()["sub"]
    idp.published_keys = [k for k in idp.published_keys if k is not RSA_KEY]
    clock.advance(JWKS_TTL + 1)
    with pytest.raises(OidcError) as refused:
        validate(token, providers, config)
    assert refused.value.code == "id_token_invalid"


def test_response_issuer_must_be_the_providers(metadata: ProviderMetadata) -> None:
    check_response_issuer(metadata, ISSUER)
    check_response_issuer(metadata, None)  # not advertised: may be absent
    with pytest.raises(OidcError) as refused:
        check_response_issuer(metadata, "https://evil.example")
    assert refused.value.code == "invalid_response"


def test_response_issuer_is_required_when_the_provider_advertises_it(
        idp: FakeProvider, providers: Providers) -> None:
    idp.discovery["authorization_response_iss_parameter_supported"] = True
    metadata = providers.metadata(ISSUER)
    with pytest.raises(OidcError):
        check_response_issuer(metadata, None)
    check_response_issuer(metadata, ISSUER)


def test_deeply_nested_json_is_a_bad_response_not_a_crash() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with httpx.Client(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, content=body))) as http:
        with pytest.raises(OidcError) as refused:
            get_json(http, f"{ISSUER}/jwks", what="JWKS")
    assert refused.value.code in ("idp_bad_response",)


def test_an_oversized_answer_is_refused_without_reading_it_all() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b" " * 65536] * 1000))

    with httpx.Client(transport=httpx.MockTransport(endless)) as http:
        with pytest.raises(OidcError) as refused:
            get_json(http, f"{ISSUER}/.well-known/openid-configuration", what="discovery")
    assert "too large" in str(refused.value)


def test_discovery_with_an_http_token_endpoint_is_refused(idp: FakeProvider,
                                                          providers: Providers) -> None:
    idp.discovery["token_endpoint"] = "http://idp.example/token"
    with pytest.raises(OidcError) as refused:
        providers.metadata(ISSUER)
    assert refused.value.code == "discovery_invalid"


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_non_finite_times_are_refused(config: OidcConfig, claim: str) -> None:
    claims = id_token_claims(**{claim: float("nan")})
    with pytest.raises(OidcError):
        _check_claims(claims, config, nonce=NONCE, now=NOW)


def test_entra_multi_tenant_needs_an_explicit_tenant_choice() -> None:
    with pytest.raises(InvalidInput) as refused:
        OidcConfig.parse({"issuer": ENTRA, "client_id": CLIENT_ID, "entra_multi_tenant": True})
    assert "entra_allowed_tenants" in str(refused.value)
    OidcConfig.parse({"issuer": ENTRA, "client_id": CLIENT_ID, "entra_multi_tenant": True,
                      "entra_any_tenant": True})
    with pytest.raises(InvalidInput):
        OidcConfig.parse({"issuer": ENTRA, "client_id": CLIENT_ID, "entra_multi_tenant": True,
                          "entra_allowed_tenants": ["not-a-guid"]})


def test_entra_tid_that_is_not_a_guid_is_refused() -> None:
    config = OidcConfig.parse({"issuer": ENTRA, "client_id": CLIENT_ID,
                               "entra_multi_tenant": True, "entra_any_tenant": True})
    tid = f"{TENANT}/v2.0/../x"
    claims = id_token_claims(iss=ENTRA.replace("{tenantid}", tid), tid=tid)
    with pytest.raises(OidcError) as refused:
        _check_claims(claims, config, nonce=NONCE, now=NOW)
    assert refused.value.code == "id_token_invalid"


def test_auth0_issuer_with_a_trailing_slash_is_kept_exactly() -> None:
    config = OidcConfig.parse({"issuer": "https://tenant.auth0.com/", "client_id": CLIENT_ID})
    assert config.issuer == "https://tenant.auth0.com/"
