"""The configuration of one SAML connection (the ``connection.config`` JSON column)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitprov.core.auth_context import check_accepted_auth_contexts
from jitprov.core.errors import InvalidInput
from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.keys import certificate_key
from jitprov.protocols.urls import is_secure_url

if TYPE_CHECKING:
    from jitprov.protocols.saml.metadata import IdpMetadata


@dataclass(frozen=True, slots=True)
class SamlConfig:
    """What ``connection add-saml`` stores. The SP private key is NOT here: it is sealed with
    the connection's secrets and handed to :func:`~jitprov.protocols.saml.sp_settings`.

    Build it with :meth:`parse` (stored JSON) or :meth:`from_metadata`; :meth:`as_dict` gives
    back the JSON that :meth:`parse` reads.
    """

    idp_entity_id: str
    idp_sso_url: str
    #: PEM certificates; a signature made by any of them is accepted (key rollover). Keys
    #: carried inside a message (``KeyInfo``) are never used.
    idp_certs: tuple[str, ...]
    #: what the IdP metadata's ``WantAuthnRequestsSigned`` says: when true, AuthnRequests are
    #: signed whatever ``sign_authn_requests`` says (:attr:`signs_authn_requests`)
    want_authn_requests_signed: bool
    metadata_url: str | None = None
    metadata_refresh_seconds: int = 3600
    #: PEM of the SP's own certificate (its private key is kept sealed elsewhere)
    sp_certificate: str = ""
    #: accept IdP-initiated (unsolicited) responses; they must then carry no InResponseTo
    allow_idp_initiated: bool = False
    clock_skew_seconds: int = 120
    #: True: the Assertion itself must be signed. False (the default): a signed Response
    #: that envelopes exactly one assertion is enough, as SAML Core 5.2 allows (Keycloak's
    #: default "Sign documents"; ADFS, Shibboleth and Entra ID can be set to sign only it)
    require_signed_assertion: bool = False
    #: sign every AuthnRequest (the default), and say so in the SP metadata
    #: (``AuthnRequestsSigned``). False: sign only when the IdP's metadata asks for it; an
    #: RSA-2048 signature costs 0.5-1 ms of CPU per login start, which an IdP that does not
    #: check it (Entra ID, Okta and Google by default) does not need
    sign_authn_requests: bool = True
    #: accept an ``emailAddress`` NameID as the account key, with a note in the identity
    #: (email addresses can be reassigned to another person)
    allow_email_name_id: bool = True
    max_response_bytes: int = 256 * 1024
    #: accept rsa-sha1 / sha1 digests (SHAttered; off by default, for legacy IdPs only)
    allow_sha1: bool = False
    #: refuse an assertion whose AuthnContextClassRef is not one of
    #: ``accepted_auth_contexts`` (URIs, at least one; the rule of ``core/auth_context.py``);
    #: they are requested in the AuthnRequest (RequestedAuthnContext, Comparison="exact")
    require_mfa: bool = False
    accepted_auth_contexts: tuple[str, ...] = ()
    #: the IdP's SingleLogoutService (Location, and ResponseLocation when it differs), by
    #: binding, from its metadata; None: the IdP has no Single Logout by that binding
    idp_slo_url: str | None = None
    idp_slo_response_url: str | None = None
    idp_slo_post_url: str | None = None
    idp_slo_post_response_url: str | None = None

    @property
    def signs_authn_requests(self) -> bool:
        """Whether AuthnRequests are signed: the connection says so, or the IdP asks. The SP
        metadata's ``AuthnRequestsSigned`` says the same, so an IdP that trusts it (as
        SimpleSAMLphp does) expects exactly what it gets."""
        return self.sign_authn_requests or self.want_authn_requests_signed

    @classmethod
    def parse(cls, config: Mapping[str, object]) -> SamlConfig:
        """Validate a stored or typed configuration. Raises InvalidInput naming the field."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise InvalidInput(f"SAML connection {unknown[0]}: unknown field")
        values: dict[str, object] = {}
        for name in known:
            if name not in config:
                if name in _REQUIRED:
                    raise InvalidInput(f"SAML connection {name}: field required")
                continue
            values[name] = _check_field(name, config[name])
        if not values["idp_certs"]:
            raise InvalidInput("SAML connection idp_certs: at least one IdP signing "
                               "certificate is required")
        try:
            values["accepted_auth_contexts"] = check_accepted_auth_contexts(
                values.get("accepted_auth_contexts"), require_mfa=bool(values.get(
                    "require_mfa")), uris_only=True)
        except ValueError as exc:
            raise InvalidInput(f"SAML connection accepted_auth_contexts: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        """The JSON-ready form (``idp_certs`` as a list) that :meth:`parse` accepts."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_metadata(cls, md: IdpMetadata, *, sp_certificate: str,
                      metadata_url: str | None) -> SamlConfig:
        """A configuration with the defaults, from parsed IdP metadata."""
        return cls.parse({
            "idp_entity_id": md.entity_id, "idp_sso_url": md.sso_redirect_url,
            "idp_certs": list(md.signing_certs),
            "want_authn_requests_signed": md.want_authn_requests_signed,
            "metadata_url": metadata_url, "sp_certificate": sp_certificate,
            **md.slo_fields(),
        })


#: the IdP's Single Logout endpoints (each optional)
_SLO_URLS = frozenset({"idp_slo_url", "idp_slo_response_url", "idp_slo_post_url",
                       "idp_slo_post_response_url"})
_REQUIRED = frozenset({"idp_entity_id", "idp_sso_url", "idp_certs",
                       "want_authn_requests_signed"})
_BOOLS = frozenset({"want_authn_requests_signed", "allow_idp_initiated",
                    "require_signed_assertion", "sign_authn_requests", "allow_email_name_id",
                    "allow_sha1", "require_mfa"})
#: (minimum, maximum) of each integer field
_INTS = {"metadata_refresh_seconds": (60, 7 * 86400), "clock_skew_seconds": (0, 600),
         "max_response_bytes": (4096, 4 * 1024 * 1024)}


def _check_field(name: str, value: object) -> object:
    where = f"SAML connection {name}"
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}: must be true or false")
        return value
    if name in _INTS:
        low, high = _INTS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"{where}: must be an integer between {low} and {high}")
        return value
    if name == "accepted_auth_contexts":
        return value  # checked with require_mfa, by parse
    if name == "idp_certs":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise InvalidInput(f"{where}: must be a list of PEM certificates")
        certs = tuple(value)
        for cert in certs:
            _check_certificate(where, cert)
        return certs
    if name in _SLO_URLS:
        if value is None:
            return None
        if not isinstance(value, str) or not is_secure_url(value):
            raise InvalidInput(f"{where}: must be an https URL (http only on loopback)")
        return value
    if name == "metadata_url":
        if value is None:
            return None
        if not isinstance(value, str) or not is_secure_url(value):
            raise InvalidInput(f"{where}: must be an https URL (http only on loopback)")
        return value
    if name == "sp_certificate":
        if value != "":
            _check_certificate(where, value)
        return value
    if name == "idp_sso_url":
        if not isinstance(value, str) or not is_secure_url(value):
            raise InvalidInput(f"{where}: must be an https URL (http only on loopback)")
        return value
    # idp_entity_id: any non-empty string (a URI, often but not always a URL)
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise InvalidInput(f"{where}: must be a non-empty string")
    return value


def _check_certificate(where: str, value: object) -> None:
    """A readable PEM certificate (parsed once per process: the result is cached)."""
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise InvalidInput(f"{where}: must be a PEM certificate")
    try:
        certificate_key(value)
    except SamlError as exc:  # unreadable, or a key no allowed signature method uses
        raise InvalidInput(f"{where}: {exc}") from None


class SamlKind:
    """Connection kind ``saml`` (registered in ``CONNECTION_KINDS``)."""

    name = "saml"
    dev_only = False

    def validate_config(self, config: Mapping[str, object]) -> None:
        SamlConfig.parse(config)
