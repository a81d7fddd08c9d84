"""IdP metadata parsing (hardened) and the SP metadata jitprov publishes (SAML Metadata 2.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from jitprov.protocols.saml import (
    SamlError,
    build_sp_metadata,
    generate_sp_keypair,
    parse_idp_metadata,
    sp_settings,
)

KEYS = Path(__file__).resolve().parents[1] / "vectors" / "saml" / "keys"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


def _b64(name: str) -> str:
    return "".join(line for line in (KEYS / name).read_text().splitlines()
                   if not line.startswith("-----"))


def entity(entity_id: str = "https://idp.example.test/metadata", *, certs: tuple[str, ...] = (
        "idp.crt",), use: str | None = "signing", valid_until: str | None = None,
        redirect: bool = True, want_signed: bool = True) -> str:
    keys = "".join(
        f'<md:KeyDescriptor{f" use={chr(34)}{use}{chr(34)}" if use else ""}><ds:KeyInfo>'
        f"<ds:X509Data><ds:X509Certificate>\n{_b64(c)}\n</ds:X509Certificate></ds:X509Data>"
        "</ds:KeyInfo></md:KeyDescriptor>" for c in certs)
    sso = ('<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
           'Location="https://idp.example.test/sso/post"/>')
    if redirect:
        sso += ('<md:SingleSignOnService '
                'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
                'Location="https://idp.example.test/sso/redirect"/>')
    until = f' validUntil="{valid_until}"' if valid_until else ""
    return (f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="{entity_id}"'
            f'{until}><md:IDPSSODescriptor WantAuthnRequestsSigned="{str(want_signed).lower()}" '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f"{keys}<md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data>"
            f"<ds:X509Certificate>{_b64('attacker.crt')}</ds:X509Certificate></ds:X509Data>"
            f"</ds:KeyInfo></md:KeyDescriptor>{sso}</md:IDPSSODescriptor></md:EntityDescriptor>")


def test_parses_an_entity_descriptor() -> None:
    md = parse_idp_metadata(entity(valid_until="2026-02-01T00:00:00Z").encode())
    assert "https://idp.example.test/metadata" == md.entity_id
    assert "https://idp.example.test/sso/redirect" == md.sso_redirect_url
    assert ((KEYS / "idp.crt").read_text(),) == md.signing_certs
    assert md.want_authn_requests_signed
    assert datetime(2026, 2, 1, tzinfo=UTC) == md.valid_until


def test_takes_every_signing_certificate_but_not_the_encryption_one() -> None:
    md = parse_idp_metadata(entity(certs=("idp.crt", "idp-next.crt"), use=None).encode())
    assert 2 == len(md.signing_certs)
    assert (KEYS / "attacker.crt").read_text() not in md.signing_certs


def test_picks_the_named_entity_out_of_an_aggregate() -> None:
    aggregate = (f'<md:EntitiesDescriptor xmlns:md="{MD}" validUntil="2026-01-20T00:00:00Z">'
                 f'{entity("https://a.example.test/idp")}{entity("https://b.example.test/idp")}'
                 "</md:EntitiesDescriptor>").encode()
    md = parse_idp_metadata(aggregate, entity_id="https://b.example.test/idp")
    assert "https://b.example.test/idp" == md.entity_id
    assert datetime(2026, 1, 20, tzinfo=UTC) == md.valid_until
    with pytest.raises(SamlError, match="several IdPs") as caught:
        parse_idp_metadata(aggregate)
    assert "invalid_metadata" == caught.value.code
    with pytest.raises(SamlError, match="no IdP with entity id"):
        parse_idp_metadata(aggregate, entity_id="https://c.example.test/idp")


@pytest.mark.parametrize(("xml", "code"), [
    (entity(redirect=False), "invalid_metadata"),
    (entity(certs=()), "invalid_metadata"),
    ("<html>not metadata</html>", "invalid_metadata"),
    ("<md:EntityDescriptor", "invalid_metadata"),
    ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + entity(), "xml_forbidden"),
])
def test_refuses_bad_metadata(xml: str, code: str) -> None:
    with pytest.raises(SamlError) as caught:
        parse_idp_metadata(xml.encode())
    assert code == caught.value.code


def test_refuses_an_unreadable_certificate() -> None:
    broken = entity().replace(_b64("idp.crt")[:40], "AAAA")
    with pytest.raises(SamlError) as caught:
        parse_idp_metadata(broken.encode())
    assert "invalid_metadata" == caught.value.code


def test_sp_metadata_describes_the_sp() -> None:
    key_pem, cert_pem = generate_sp_keypair("sp.example.test")
    sp = sp_settings("https://sp.example.test/", "acme", certificate=cert_pem,
                     private_key_pem=key_pem)
    root = etree.fromstring(build_sp_metadata(sp))
    assert "https://sp.example.test/sso/acme/saml/metadata" == root.get("entityID")
    descriptor = root.find(f"{{{MD}}}SPSSODescriptor")
    assert ("true", "false") == (descriptor.get("AuthnRequestsSigned"),
                                 descriptor.get("WantAssertionsSigned"))
    uses = [k.get("use") for k in descriptor.findall(f"{{{MD}}}KeyDescriptor")]
    assert ["signing", "encryption"] == uses
    body = "".join(cert_pem.splitlines()[1:-1])
    assert [body, body] == [c.text for c in descriptor.iter(f"{{{DS}}}X509Certificate")]
    assert ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"] == [
        n.text for n in descriptor.findall(f"{{{MD}}}NameIDFormat")]
    acs = descriptor.find(f"{{{MD}}}AssertionConsumerService")
    assert ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
            "https://sp.example.test/sso/acme/saml/acs", "true") == (
        acs.get("Binding"), acs.get("Location"), acs.get("isDefault"))


def test_sp_metadata_always_promises_signed_requests() -> None:
    # every AuthnRequest is signed (build_authn_request), so the promise is always true;
    # WantAssertionsSigned follows the connection's require_signed_assertion
    sp = sp_settings("https://sp.example.test", "acme",
                     certificate=(KEYS / "sp.crt").read_text(), private_key_pem="")
    root = etree.fromstring(build_sp_metadata(sp, want_assertions_signed=True))
    descriptor = root.find(f"{{{MD}}}SPSSODescriptor")
    assert ("true", "true") == (descriptor.get("AuthnRequestsSigned"),
                                descriptor.get("WantAssertionsSigned"))


def test_sp_settings_never_show_the_private_key() -> None:
    sp = sp_settings("https://sp.example.test", "acme", certificate="CERT",
                     private_key_pem="-----BEGIN PRIVATE KEY-----SECRET")
    assert "SECRET" not in repr(sp)
    assert "PRIVATE" not in repr(sp)
