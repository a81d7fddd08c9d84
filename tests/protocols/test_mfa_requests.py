"""MFA on the wire: ``acr_values`` in the OIDC authorization request, ``RequestedAuthnContext``
in the signed SAML AuthnRequest, and the asserted values read back (the ID token's
``acr``/``amr``, the verified assertion's AuthnContextClassRef) as the claim
``auth_context``."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the dev set

from jitprov.protocols.oidc import (
    OidcConfig,
    ProviderMetadata,
    build_authorization_request,
    identity_from_claims,
)
from jitprov.protocols.saml import build_authn_request, validate_response
from tests.protocols.test_saml_authn_request import CONFIG, NOW, SP
from tests.protocols.test_saml_vectors import the_config, the_sp
from tests.vectors.saml.generate import NOW as VECTOR_NOW
from tests.vectors.saml.generate import REQUEST_ID, SAML, assertion_of, build, q, serialize, sign

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
OKTA_2FA = "urn:okta:loa:2fa:any"
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


def acr_values(metadata: ProviderMetadata, config: OidcConfig, **mfa: object) -> list[str]:
    config = OidcConfig.parse({**config.model_dump(), **mfa})
    url = build_authorization_request(metadata, config, state="s",
                                      redirect_uri="https://app.example/cb").url
    return parse_qs(urlsplit(url).query).get("acr_values", [])


def test_the_authorization_request_asks_for_the_acr_values_in_the_order_listed(
        metadata: ProviderMetadata, config: OidcConfig) -> None:
    assert [f"{OKTA_2FA} phr"] == acr_values(metadata, config, require_mfa=True,
                                             accepted_auth_contexts=[OKTA_2FA, "mfa", "phr"])
    assert [] == acr_values(metadata, config, require_mfa=True)  # amr mfa: nothing to ask
    assert [] == acr_values(metadata, config)


def test_auth_context_comes_from_the_id_token_never_from_userinfo() -> None:
    claims = {"iss": "https://idp", "sub": "u-1", "acr": OKTA_2FA, "amr": ["pwd", "otp"],
              "auth_time": 1700000000}
    identity = identity_from_claims(claims, {"sub": "u-1", "amr": ["mfa"], "acr": "forged",
                                             "auth_context": {"amr": ["mfa"]}})
    assert {"acr": OKTA_2FA, "amr": ["pwd", "otp"], "class_refs": []} == identity.claims[
        "auth_context"]
    unsigned_only = identity_from_claims({"iss": "https://idp", "sub": "u-1"},
                                         {"sub": "u-1", "amr": ["mfa"]})
    assert {"acr": None, "amr": [], "class_refs": []} == unsigned_only.claims["auth_context"]


def _request(redirect_url: str) -> etree._Element:
    query = parse_qs(urlsplit(redirect_url).query)
    return etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15))


def test_the_authn_request_carries_requested_authn_context_under_its_signature() -> None:
    refs = [TWO_FACTOR, "https://refeds.org/profile/mfa?x=1&y=2"]
    config = dataclasses.replace(CONFIG, require_mfa=True, accepted_auth_contexts=tuple(refs))
    url = build_authn_request(SP, config, relay_state="st", now=NOW).redirect_url
    root = _request(url)
    # SAML Core 3.4.1 (schema order): NameIDPolicy, Conditions, RequestedAuthnContext
    assert [etree.QName(c).localname for c in root] == ["Issuer", "NameIDPolicy",
                                                         "RequestedAuthnContext"]
    requested = root.find(f"{{{SAMLP}}}RequestedAuthnContext")
    assert "exact" == requested.get("Comparison")
    assert refs == [ref.text for ref in requested]
    query = urlsplit(url).query
    signed, _, signature = query.rpartition("&Signature=")
    public = x509.load_pem_x509_certificate(SP.certificate.encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(unquote(signature)), signed.encode(), padding.PKCS1v15(),
                  hashes.SHA256())


def test_no_requested_authn_context_without_require_mfa() -> None:
    root = _request(build_authn_request(SP, CONFIG, relay_state="", now=NOW).redirect_url)
    assert root.find(f"{{{SAMLP}}}RequestedAuthnContext") is None


def _validated_class_refs(root: etree._Element) -> object:
    encoded = base64.b64encode(serialize(root)).decode()
    assertion = validate_response(encoded, sp=the_sp(), config=the_config(),
                                  expected_in_response_to=REQUEST_ID, now=VECTOR_NOW)
    return assertion.identity.claims["auth_context"]


def test_the_class_ref_is_read_from_the_verified_assertion() -> None:
    root = build()
    sign(assertion_of(root))
    assert {"acr": None, "amr": [], "class_refs": [
        "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]} == (
        _validated_class_refs(root))


def test_a_comment_in_the_class_ref_does_not_cut_it() -> None:
    """The signature covers the text without comments (exclusive c14n): that whole text is
    the value, not the part before the comment."""
    root = build()
    ref = assertion_of(root).find(f".//{q(SAML, 'AuthnContextClassRef')}")
    ref.text = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwo"
    ref.append(etree.Comment(""))
    ref[-1].tail = "FactorContract-not"
    sign(assertion_of(root))
    assert [TWO_FACTOR + "-not"] == _validated_class_refs(root)["class_refs"]  # type: ignore[index]
