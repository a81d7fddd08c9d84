"""SamlConfig: the connection's JSON config, parsed with errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.protocols.saml import IdpMetadata, SamlConfig, SamlKind
from jitprov.services.login.kinds import CONNECTION_KINDS

KEYS = Path(__file__).resolve().parents[1] / "vectors" / "saml" / "keys"
IDP_CERT = (KEYS / "idp.crt").read_text()
SP_CERT = (KEYS / "sp.crt").read_text()
MINIMAL: dict[str, object] = {
    "idp_entity_id": "https://idp.example.test/metadata",
    "idp_sso_url": "https://idp.example.test/sso",
    "idp_certs": [IDP_CERT],
    "want_authn_requests_signed": True,
}


def test_parses_a_minimal_config_with_safe_defaults() -> None:
    config = SamlConfig.parse(MINIMAL)
    assert (IDP_CERT,) == config.idp_certs
    assert not config.require_signed_assertion  # a signed Response enveloping it is enough
    assert config.sign_authn_requests and config.signs_authn_requests  # signed by default
    assert not config.allow_idp_initiated
    assert not config.allow_sha1
    assert 120 == config.clock_skew_seconds
    assert 256 * 1024 == config.max_response_bytes


def test_as_dict_round_trips_through_parse() -> None:
    config = SamlConfig.parse({**MINIMAL, "allow_idp_initiated": True, "sp_certificate": SP_CERT,
                               "metadata_url": "https://idp.example.test/md.xml"})
    assert config == SamlConfig.parse(config.as_dict())
    assert [IDP_CERT] == config.as_dict()["idp_certs"]


@pytest.mark.parametrize(("change", "field"), [
    ({"idp_entity_id": ""}, "idp_entity_id"),
    ({"idp_sso_url": "http://idp.example.test/sso"}, "idp_sso_url"),
    ({"idp_sso_url": "http://localhost.attacker.example/sso"}, "idp_sso_url"),
    ({"idp_certs": []}, "idp_certs"),
    ({"idp_certs": IDP_CERT}, "idp_certs"),
    ({"idp_certs": ["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"]},
     "idp_certs"),
    ({"want_authn_requests_signed": "yes"}, "want_authn_requests_signed"),
    ({"clock_skew_seconds": 3600}, "clock_skew_seconds"),
    ({"clock_skew_seconds": True}, "clock_skew_seconds"),
    ({"max_response_bytes": 10}, "max_response_bytes"),
    ({"metadata_url": "ftp://idp.example.test/md"}, "metadata_url"),
    ({"sp_certificate": "nope"}, "sp_certificate"),
    ({"surprise": 1}, "surprise"),
])
def test_refuses_a_bad_field_naming_it(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        SamlConfig.parse({**MINIMAL, **change})
    assert f"SAML connection {field}:" in str(caught.value)


def test_refuses_a_missing_required_field() -> None:
    config = dict(MINIMAL)
    del config["idp_certs"]
    with pytest.raises(InvalidInput, match="idp_certs: field required"):
        SamlConfig.parse(config)


def test_http_is_accepted_on_loopback_only() -> None:
    config = SamlConfig.parse({**MINIMAL, "idp_sso_url": "http://127.0.0.1:8080/sso"})
    assert "http://127.0.0.1:8080/sso" == config.idp_sso_url


def test_from_metadata_takes_the_idp_settings() -> None:
    md = IdpMetadata(entity_id="https://idp.example.test/metadata",
                     sso_redirect_url="https://idp.example.test/sso", signing_certs=(IDP_CERT,),
                     want_authn_requests_signed=False, valid_until=None)
    config = SamlConfig.from_metadata(md, sp_certificate=SP_CERT,
                                      metadata_url="https://idp.example.test/md.xml")
    assert (md.entity_id, md.sso_redirect_url, md.signing_certs, False, SP_CERT,
            "https://idp.example.test/md.xml") == (
        config.idp_entity_id, config.idp_sso_url, config.idp_certs,
        config.want_authn_requests_signed, config.sp_certificate, config.metadata_url)


def test_saml_is_a_registered_connection_kind() -> None:
    kind = CONNECTION_KINDS["saml"]
    assert isinstance(kind, SamlKind)
    assert ("saml", False) == (kind.name, kind.dev_only)
    kind.validate_config(MINIMAL)
    with pytest.raises(InvalidInput):
        kind.validate_config({})
