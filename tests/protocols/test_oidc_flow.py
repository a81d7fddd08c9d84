"""The authorization code flow (OpenID Connect Core 1.0 section 3.1): the authorization
request with PKCE (RFC 7636), the code exchange with each client authentication method
(Core section 9), and UserInfo (Core 5.3)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from jitprov.protocols.oidc import (
    OidcConfig,
    OidcError,
    ProviderMetadata,
    build_authorization_request,
    exchange_code,
    fetch_userinfo,
)
from jitprov.protocols.oidc.flow import code_challenge
from jitprov.protocols.urls import is_secure_url
from tests.protocols.oidc_fakes import CLIENT_ID, ISSUER, NOW, FakeProvider

VECTORS = Path(__file__).parent.parent / "vectors" / "oidc"
REDIRECT_URI = "https://app.example/sso/acme/oidc/callback"
CLIENT_KEY = ECKey.generate_key("P-256", parameters={"kid": "client-1"}, private=True)
SECRET = "p:ss+word"  # RFC 6749 2.3.1: both characters must be form-urlencoded before Basic
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def configured(**overrides: object) -> OidcConfig:
    return OidcConfig.parse({"issuer": ISSUER, "client_id": CLIENT_ID, **overrides})


def single(query: str) -> dict[str, str]:
    """A form or query string as a dict; fails on a repeated parameter."""
    parsed = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def token_requests(idp: FakeProvider) -> list[httpx.Request]:
    return [r for r in idp.requests if r.url.path == "/token"]


def exchange(http: httpx.Client, metadata: ProviderMetadata, config: OidcConfig,
             **kwargs: object):
    return exchange_code(http, metadata, config, code="SplxlOBeZQQYbYS6WxSbIA",
                         code_verifier="v" * 43, redirect_uri=REDIRECT_URI, now=NOW,
                         **kwargs)  # type: ignore[arg-type]


# -- authorization request -------------------------------------------------------------------

def test_code_challenge_matches_rfc7636_appendix_b():
    vector = json.loads((VECTORS / "rfc7636-appendix-b-s256.json").read_text())

    assert vector["code_challenge"] == code_challenge(vector["code_verifier"])


def test_authorization_request_carries_code_flow_pkce_state_and_nonce(metadata, config):
    request = build_authorization_request(metadata, config, state="af0ifjsldkj",
                                          redirect_uri=REDIRECT_URI)
    url = urlsplit(request.url)
    digest = hashlib.sha256(request.code_verifier.encode("ascii")).digest()

    assert ("https", "idp.example", "/authorize", {
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile", "state": "af0ifjsldkj", "nonce": request.nonce,
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"),
        "code_challenge_method": "S256"}) == (url.scheme, url.netloc, url.path,
                                              single(url.query))


def test_authorization_request_uses_a_fresh_nonce_and_verifier_of_rfc7636_length(metadata,
                                                                                   config):
    first, second = (build_authorization_request(metadata, config, state="s",
                                                 redirect_uri=REDIRECT_URI) for _ in range(2))

    assert (True, True, True) == (first.nonce != second.nonce,
                                  first.code_verifier != second.code_verifier,
                                  43 <= len(first.code_verifier) <= 128)


# -- code exchange ---------------------------------------------------------------------------

def test_client_secret_basic_sends_form_encoded_credentials_in_the_header_only(
        http, metadata, idp):
    exchange(http, metadata, configured(token_auth_method="client_secret_basic"),
             client_secret=SECRET)
    (request,) = token_requests(idp)
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    user, _, password = base64.b64decode(credentials).decode("ascii").partition(":")

    assert ("Basic", "jitprov-client", "p%3Ass%2Bword", (CLIENT_ID, SECRET), {
        "grant_type": "authorization_code", "code": "SplxlOBeZQQYbYS6WxSbIA",
        "redirect_uri": REDIRECT_URI, "code_verifier": "v" * 43}) == (
        scheme, user, password, (unquote_plus(user), unquote_plus(password)),
        single(request.content.decode("ascii")))


def test_client_secret_post_sends_credentials_in_the_body_and_no_authorization_header(
        http, metadata, idp):
    exchange(http, metadata, configured(token_auth_method="client_secret_post"),
             client_secret=SECRET)
    (request,) = token_requests(idp)
    form = single(request.content.decode("ascii"))

    assert (CLIENT_ID, SECRET, False) == (form["client_id"], form["client_secret"],
                                          "Authorization" in request.headers)


def test_private_key_jwt_sends_a_client_assertion_verifiable_with_the_public_key(
        http, metadata, idp):
    exchange(http, metadata, configured(token_auth_method="private_key_jwt"),
             private_key=CLIENT_KEY)
    (request,) = token_requests(idp)
    form = single(request.content.decode("ascii"))
    public = ECKey.import_key(CLIENT_KEY.as_dict(private=False))
    assertion = jwt.decode(form["client_assertion"], public, algorithms=["ES256"])
    claims = assertion.claims

    assert (ASSERTION_TYPE, CLIENT_ID, CLIENT_ID, CLIENT_ID, "https://idp.example/token",
            True, True, int(NOW), False, False) == (
        form["client_assertion_type"], form["client_id"], claims["iss"], claims["sub"],
        claims["aud"], 0 < claims["exp"] - claims["iat"] <= 60,
        isinstance(claims.get("jti"), str) and len(claims["jti"]) >= 16, claims["iat"],
        "client_secret" in form, "Authorization" in request.headers)


def test_private_key_jwt_uses_a_new_jti_for_each_assertion(http, metadata, idp):
    config = configured(token_auth_method="private_key_jwt")
    exchange(http, metadata, config, private_key=CLIENT_KEY)
    exchange(http, metadata, config, private_key=CLIENT_KEY)
    public = ECKey.import_key(CLIENT_KEY.as_dict(private=False))
    jtis = {jwt.decode(single(r.content.decode("ascii"))["client_assertion"], public,
                       algorithms=["ES256"]).claims["jti"] for r in token_requests(idp)}

    assert 2 == len(jtis)


def test_invalid_client_is_a_token_error_naming_the_client_credentials(http, metadata, idp):
    idp.token_response = (401, {"error": "invalid_client"})

    with pytest.raises(OidcError) as caught:
        exchange(http, metadata, configured(), client_secret=SECRET)

    assert ("token_error", True, False) == (
        caught.value.code, "client id or secret" in str(caught.value), SECRET in
        str(caught.value))


def test_a_token_response_without_id_token_is_a_token_error(http, metadata, idp):
    idp.token_response = (200, {"access_token": "at-SlAV32hkKG", "token_type": "Bearer"})

    with pytest.raises(OidcError) as caught:
        exchange(http, metadata, configured(), client_secret=SECRET)

    assert "token_error" == caught.value.code


def test_an_unreachable_token_endpoint_is_reported(http, metadata, idp):
    idp.unreachable = True

    with pytest.raises(OidcError) as caught:
        exchange(http, metadata, configured(), client_secret=SECRET)

    assert "idp_unreachable" == caught.value.code


def test_a_token_endpoint_url_httpx_cannot_send_to_is_a_readable_error(http, metadata):
    """The discovery check passes URLs httpx then refuses to build (an empty label): an
    OidcError the callback audits, not an httpx exception past it."""
    broken = dataclasses.replace(metadata, token_endpoint="https://ex\u00e4mple..com/token")

    with pytest.raises(OidcError) as caught:
        exchange(http, broken, configured(), client_secret=SECRET)

    assert "idp_bad_response" == caught.value.code


@pytest.mark.parametrize("url", ["https://idp.example:99999/token", "https://idp.example:0x1/t"])
def test_an_endpoint_with_a_port_no_socket_can_have_is_not_usable(url):
    assert not is_secure_url(url)
    assert is_secure_url("https://idp.example:8443/token")


def test_token_response_repr_never_shows_the_tokens(http, metadata, idp):
    response = exchange(http, metadata, configured(), client_secret=SECRET)
    shown = repr(response) + str(response)

    assert (True, False, False) == (
        response.access_token == "at-SlAV32hkKG",
        response.id_token in shown, "at-SlAV32hkKG" in shown)


# -- userinfo --------------------------------------------------------------------------------

def test_userinfo_returns_the_claims_about_the_id_token_subject(http, metadata, idp):
    userinfo = fetch_userinfo(http, metadata, "at-SlAV32hkKG", subject="248289761001")
    (request,) = [r for r in idp.requests if r.url.path == "/userinfo"]

    assert (idp.userinfo, "Bearer at-SlAV32hkKG") == (userinfo,
                                                      request.headers["Authorization"])


def test_userinfo_about_another_subject_is_refused(http, metadata, idp):
    idp.userinfo = {"sub": "someone-else", "name": "Mallory"}

    with pytest.raises(OidcError) as caught:
        fetch_userinfo(http, metadata, "at-SlAV32hkKG", subject="248289761001")

    assert "userinfo_mismatch" == caught.value.code
