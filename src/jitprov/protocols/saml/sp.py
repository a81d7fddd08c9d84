"""The Service Provider's own settings: entity id, ACS URL, certificate and private key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class SpSettings:
    """One connection's SP side. ``repr()`` never shows the private key.

    ``entity_id`` is the SP's Issuer and the Audience the IdP must assert; ``acs_url`` is the
    exact Destination and Recipient the IdP must write (compared as strings, not prefixes).
    """

    entity_id: str
    acs_url: str
    certificate: str
    private_key_pem: str = field(repr=False)
    #: the Single Logout endpoint (both bindings), where the IdP sends logout messages
    slo_url: str = ""


def sp_settings(base_url: str, connection_slug: str, *, certificate: str,
                private_key_pem: str) -> SpSettings:
    """The SP settings of a connection served under ``base_url`` (no trailing slash needed):
    entity id ``{base_url}/sso/{slug}/saml/metadata``, ACS ``{base_url}/sso/{slug}/saml/acs``,
    Single Logout ``{base_url}/sso/{slug}/saml/slo``."""
    base = base_url.rstrip("/")
    return SpSettings(entity_id=f"{base}/sso/{connection_slug}/saml/metadata",
                      acs_url=f"{base}/sso/{connection_slug}/saml/acs",
                      certificate=certificate, private_key_pem=private_key_pem,
                      slo_url=f"{base}/sso/{connection_slug}/saml/slo")


def generate_sp_keypair(common_name: str, *, now: dt.datetime | None = None,
                        valid_days: int = 3650) -> tuple[str, str]:
    """A new RSA-2048 key and a self-signed certificate for it: (private key PEM, cert PEM).

    The key signs AuthnRequests and decrypts EncryptedAssertions; the certificate goes into the
    SP metadata. ``now`` defaults to the current time (this runs at connection creation, not
    on the login path).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "jitprov")])
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()
