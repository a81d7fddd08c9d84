"""ID token validation (OpenID Connect Core 1.0 section 3.1.3.7), signature and claims,
against a fake provider whose keys are generated locally."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from jitprov.core.identity import ExternalIdentity
from jitprov.protocols.oidc import OidcConfig, OidcError, Providers, identity_from_claims
from tests.protocols.oidc_fakes import (
    ATTACKER_EC_KEY,
    ATTACKER_RSA_KEY,
    CLIENT_ID,
    EC_KEY,
    ISSUER,
    NOW,
    ROTATED_RSA_KEY,
    RSA_KEY,
    FakeClock,
    FakeProvider,
    id_token_claims,
    sign_id_token,
    unsigned_token,
    validate,
)

SUBJECT = "248289761001"


def refusal(token: str, providers: Providers, config: OidcConfig, **kwargs: object) -> OidcError:
    with pytest.raises(OidcError) as caught:
        validate(token, providers, config, **kwargs)  # type: ignore[arg-type]
    return caught.value


# -- a valid token ---------------------------------------------------------------------------

def test_returns_the_claims_of_a_valid_rs256_id_token(providers, config):
    claims = id_token_claims()

    assert claims == validate(sign_id_token(claims), providers, config)


def test_returns_the_claims_of_a_valid_es256_id_token(providers, config):
    claims = id_token_claims()

    assert claims == validate(sign_id_token(claims, EC_KEY), providers, config)


def test_identity_keeps_person_claims_and_drops_token_claims(providers, config):
    claims = validate(sign_id_token(id_token_claims(azp=CLIENT_ID, jti="j-1", sid="s-1",
                                                    nbf=int(NOW) - 1)), providers, config)

    expected = ExternalIdentity(issuer=ISSUER, subject=SUBJECT, claims={
        "sub": SUBJECT, "email": "jane@example.org", "email_verified": True, "name": "Jane Doe",
        "auth_context": {"acr": None, "amr": [], "class_refs": []}},  # jitprov's own claim
        idp_session_id="s-1")  # the sid is not a claim: it is kept for back-channel logout
    assert expected == identity_from_claims(claims)


def test_userinfo_adds_claims_and_the_id_token_wins_conflicts(providers, config):
    claims = validate(sign_id_token(id_token_claims()), providers, config)
    userinfo = {"sub": SUBJECT, "name": "Name From Userinfo", "email": "other@example.org",
                "groups": ["engineering"], "locale": "de-CH"}

    identity = identity_from_claims(claims, userinfo)

    assert {"sub": SUBJECT, "email": "jane@example.org", "email_verified": True,
            "name": "Jane Doe", "groups": ["engineering"], "locale": "de-CH",
            "auth_context": {"acr": None, "amr": [], "class_refs": []}} == identity.claims


# -- signature and JOSE header attacks -------------------------------------------------------

def test_refuses_a_signature_by_another_key_with_the_provider_kid(providers, config):
    token = sign_id_token(id_token_claims(), ATTACKER_RSA_KEY)  # kid "rsa-1", like the IdP's

    assert "id_token_invalid" == refusal(token, providers, config).code


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_refuses_an_unsigned_alg_none_token(providers, config, alg):
    token = unsigned_token({"alg": alg, "kid": RSA_KEY.kid}, id_token_claims())

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_an_hs256_token_keyed_with_the_provider_public_key(providers, config):
    # The classic algorithm confusion: HMAC "signed" with the RSA public key anyone can fetch.
    public_pem = RSA_KEY.as_pem(private=False)
    unsigned = unsigned_token({"alg": "HS256", "kid": RSA_KEY.kid}, id_token_claims())
    signing_input = unsigned.rsplit(".", 1)[0]
    mac = hmac.new(public_pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    token = unsigned_token({"alg": "HS256", "kid": RSA_KEY.kid}, id_token_claims(), mac)

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_jku_header_and_never_fetches_the_attacker_url(providers, config, idp, clock):
    validate(sign_id_token(id_token_claims()), providers, config)  # keys cached
    clock.advance(config.jwks_refresh_interval_seconds)  # so an unknown kid may refetch
    token = sign_id_token(id_token_claims(), ATTACKER_EC_KEY,
                          header={"jku": "https://attacker.example/jwks.json"})

    error = refusal(token, providers, config)

    assert ("id_token_invalid", {"idp.example"}) == (error.code, idp.hosts_contacted())


def test_refuses_an_embedded_jwk_header_naming_an_attacker_key(providers, config, idp):
    attacker_public = ATTACKER_EC_KEY.as_dict(private=False)
    token = sign_id_token(id_token_claims(), ATTACKER_EC_KEY,
                          header={"kid": EC_KEY.kid, "jwk": attacker_public})

    error = refusal(token, providers, config)

    assert ("id_token_invalid", {"idp.example"}) == (error.code, idp.hosts_contacted())


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "e30.e30.", "e30.e30.e30.e30.e30"])
def test_refuses_a_malformed_token(providers, config, token):
    assert "id_token_invalid" == refusal(token, providers, config).code


# -- claims ----------------------------------------------------------------------------------

def test_refuses_a_token_from_another_issuer(providers, config):
    token = sign_id_token(id_token_claims(iss="https://evil.example"))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_token_whose_audience_is_not_this_client(providers, config):
    token = sign_id_token(id_token_claims(aud="other-client"))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_token_with_several_audiences_and_no_azp(providers, config):
    token = sign_id_token(id_token_claims(aud=[CLIENT_ID, "other-client"]))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_accepts_a_token_with_several_audiences_when_azp_is_this_client(providers, config):
    claims = id_token_claims(aud=[CLIENT_ID, "other-client"], azp=CLIENT_ID)

    assert claims == validate(sign_id_token(claims), providers, config)


def test_refuses_a_token_whose_azp_is_another_client(providers, config):
    token = sign_id_token(id_token_claims(azp="other-client"))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_token_expired_beyond_the_clock_skew(providers, config):
    token = sign_id_token(id_token_claims(exp=int(NOW) - config.clock_skew_seconds - 1))

    assert "id_token_expired" == refusal(token, providers, config).code


def test_accepts_a_token_expired_within_the_clock_skew(providers, config):
    claims = id_token_claims(exp=int(NOW) - config.clock_skew_seconds + 1)

    assert claims == validate(sign_id_token(claims), providers, config)


def test_refuses_a_token_without_exp(providers, config):
    token = sign_id_token(id_token_claims(exp=None))

    assert "id_token_expired" == refusal(token, providers, config).code


def test_refuses_a_token_issued_in_the_future_beyond_the_clock_skew(providers, config):
    token = sign_id_token(id_token_claims(iat=int(NOW) + config.clock_skew_seconds + 1))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_accepts_a_token_issued_in_the_future_within_the_clock_skew(providers, config):
    claims = id_token_claims(iat=int(NOW) + config.clock_skew_seconds - 1)

    assert claims == validate(sign_id_token(claims), providers, config)


def test_refuses_a_token_not_valid_before_a_future_nbf(providers, config):
    token = sign_id_token(id_token_claims(nbf=int(NOW) + config.clock_skew_seconds + 1))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_token_without_subject(providers, config):
    token = sign_id_token(id_token_claims(sub=None))

    assert "id_token_invalid" == refusal(token, providers, config).code


def test_refuses_a_token_answering_another_login_nonce(providers, config):
    token = sign_id_token(id_token_claims(nonce="nonce-of-another-login"))

    assert "nonce_mismatch" == refusal(token, providers, config).code


def test_refuses_a_token_without_nonce(providers, config):
    token = sign_id_token(id_token_claims(nonce=None))

    assert "nonce_mismatch" == refusal(token, providers, config).code


def test_refuses_a_token_with_a_non_ascii_nonce_as_a_mismatch(providers, config):
    # hmac.compare_digest raises TypeError on non-ASCII str: it must still be a refusal.
    token = sign_id_token(id_token_claims(nonce="nönce"))

    assert "nonce_mismatch" == refusal(token, providers, config).code


# -- key rotation and the JWKS refresh rate limit --------------------------------------------

def test_refetches_the_jwks_once_for_the_first_token_after_a_key_rotation(
        providers, config, idp, clock):
    validate(sign_id_token(id_token_claims()), providers, config)
    idp.published_keys = [ROTATED_RSA_KEY, EC_KEY]
    clock.advance(config.jwks_refresh_interval_seconds + 1)
    claims = id_token_claims(email="after-rotation@example.org")

    first = validate(sign_id_token(claims, ROTATED_RSA_KEY), providers, config)
    validate(sign_id_token(claims, ROTATED_RSA_KEY), providers, config)

    assert (claims, 2) == (first, idp.count("jwks"))


def test_a_flood_of_unknown_kids_fetches_the_jwks_once_per_interval(
        providers, config, idp, clock):
    validate(sign_id_token(id_token_claims()), providers, config)

    def flood(tokens: int) -> list[str]:
        codes = []
        for _ in range(tokens):
            token = sign_id_token(id_token_claims(), ATTACKER_EC_KEY,
                                  header={"kid": uuid.uuid4().hex})
            codes.append(refusal(token, providers, config).code)
        return codes

    first_flood = flood(20)
    after_first_flood = idp.count("jwks")
    clock.advance(config.jwks_refresh_interval_seconds)
    second_flood = flood(20)

    assert (["id_token_invalid"] * 20, 1, ["id_token_invalid"] * 20, 2) == (
        first_flood, after_first_flood, second_flood, idp.count("jwks"))


def test_a_failing_jwks_refetch_still_counts_against_the_rate_limit(
        providers, config, idp, clock):
    validate(sign_id_token(id_token_claims()), providers, config)
    idp.failing["jwks"] = 500
    clock.advance(config.jwks_refresh_interval_seconds)

    for _ in range(10):
        token = sign_id_token(id_token_claims(), ATTACKER_EC_KEY,
                              header={"kid": uuid.uuid4().hex})
        with pytest.raises(OidcError):
            validate(token, providers, config)

    assert 2 == idp.count("jwks")


# -- Entra ID multi-tenant -------------------------------------------------------------------

ENTRA_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
ENTRA_COMMON = "https://login.microsoftonline.com/common/v2.0"
TENANT_A = "9188040d-6c67-4c5b-b112-36a304b66dad"
TENANT_B = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TENANT_C = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


@pytest.fixture
def entra() -> FakeProvider:
    return FakeProvider(ENTRA_TEMPLATE, base=ENTRA_COMMON)


@pytest.fixture
def entra_providers(entra: FakeProvider, clock: FakeClock):
    with entra.client() as client:
        yield Providers(client, clock=clock)


@pytest.fixture
def entra_config() -> OidcConfig:
    return OidcConfig.parse({"issuer": ENTRA_TEMPLATE, "client_id": CLIENT_ID,
                             "entra_multi_tenant": True,
                             "entra_allowed_tenants": [TENANT_A, TENANT_B]})


def entra_claims(tenant: str | None, *, iss_tenant: str | None = None,
                 **overrides: object) -> dict[str, object]:
    issuer = ENTRA_TEMPLATE.replace("{tenantid}", iss_tenant or tenant or "common")
    return id_token_claims(iss=issuer, tid=tenant, **overrides)


def test_entra_discovers_the_common_endpoint(entra_providers, entra_config, entra):
    validate(sign_id_token(entra_claims(TENANT_A)), entra_providers, entra_config)

    assert (ENTRA_COMMON, 1) == (entra_config.discovery_issuer(), entra.count("discovery"))


def test_entra_accepts_an_issuer_carrying_the_token_tenant(entra_providers, entra_config):
    claims = entra_claims(TENANT_A)

    assert claims == validate(sign_id_token(claims), entra_providers, entra_config)


def test_entra_refuses_a_token_without_tid(entra_providers, entra_config):
    token = sign_id_token(entra_claims(None, iss_tenant=TENANT_A))

    assert "id_token_invalid" == refusal(token, entra_providers, entra_config).code


def test_entra_refuses_a_tenant_not_allowed(entra_providers, entra_config):
    token = sign_id_token(entra_claims(TENANT_C))

    assert "tenant_not_allowed" == refusal(token, entra_providers, entra_config).code


def test_entra_refuses_an_issuer_naming_another_tenant_than_tid(entra_providers, entra_config):
    token = sign_id_token(entra_claims(TENANT_A, iss_tenant=TENANT_B))

    assert "id_token_invalid" == refusal(token, entra_providers, entra_config).code


def test_entra_refuses_the_literal_template_as_issuer(entra_providers, entra_config):
    token = sign_id_token(id_token_claims(iss=ENTRA_TEMPLATE, tid=TENANT_A))

    assert "id_token_invalid" == refusal(token, entra_providers, entra_config).code


def test_entra_groups_overage_drops_groups_and_reports_a_note(entra_providers, entra_config):
    claims = validate(sign_id_token(entra_claims(
        TENANT_A, groups=["only-some-of-the-groups"],
        _claim_names={"groups": "src1"},
        _claim_sources={"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/"
                                             "00000000-0000-0000-0000-000000000001/"
                                             "getMemberObjects"}})), entra_providers, entra_config)

    identity = identity_from_claims(claims)

    assert (False, [], True) == (
        "groups" in identity.claims,
        [name for name in identity.claims if name.startswith("_claim_")],
        any("overage" in note for note in identity.notes))


# -- Google Workspace hosted domains ---------------------------------------------------------

@pytest.fixture
def google_config() -> OidcConfig:
    return OidcConfig.parse({"issuer": ISSUER, "client_id": CLIENT_ID,
                             "google_hosted_domains": ["example.org"]})


def test_google_accepts_an_allowed_hosted_domain(providers, google_config):
    claims = id_token_claims(hd="example.org")

    assert claims == validate(sign_id_token(claims), providers, google_config)


@pytest.mark.parametrize("hd", ["other.example", "EXAMPLE.ORG.evil.example", None])
def test_google_refuses_another_or_missing_hosted_domain(providers, google_config, hd):
    token = sign_id_token(id_token_claims(hd=hd))

    assert "domain_not_allowed" == refusal(token, providers, google_config).code

