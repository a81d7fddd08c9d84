"""PEM keys and certificates, parsed once per process and cached by content digest.

Loading a PEM private key costs ~50 ms: never on the request path. The caches are keyed by the
SHA-256 of the PEM text (ids and versions repeat across databases; content does not lie).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import TypeVar

import xmlsec
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import PublicKeyAlgorithmOID

from jitprov.protocols.saml.errors import SamlError

_V = TypeVar("_V")
_LOCK = threading.Lock()
#: a bound, not an eviction policy: keys change a few times a year per connection
_MAX_ENTRIES = 512
_CERT_KEYS: dict[str, tuple[xmlsec.Key, bytes]] = {}
_XMLSEC_PRIVATE: dict[str, xmlsec.Key] = {}
_PRIVATE: dict[str, PrivateKeyTypes] = {}
#: why a certificate whose key is restricted to RSA-PSS cannot be pinned: the signature
#: methods accepted (RSA PKCS#1 v1.5, ECDSA) are not PSS
_PSS_ONLY = ("a pinned IdP certificate of this connection has a key for RSA-PSS signatures "
            "only, and SAML signatures are accepted as RSA PKCS#1 v1.5 or ECDSA")


def _digest(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()


def _store(cache: dict[str, _V], digest: str, value: _V) -> None:
    with _LOCK:
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        cache[digest] = value


def certificate_key(pem: str) -> tuple[xmlsec.Key, bytes]:
    """The public key of a pinned PEM certificate, as an xmlsec key, with the certificate's
    DER (to match a message's X509Certificate hint). Raises SamlError ``invalid_response``
    naming no key material when the PEM is unreadable (a misconfigured connection).

    The key is the certificate's public key alone: a pin trusts the key, whatever the
    certificate's dates say (xmlsec checks none, given a key), and an xmlsec key carrying its
    certificate costs each verification ~0.1 ms more (xmlsec copies the certificate with the
    key into every signature context). A certificate whose key is restricted to RSA-PSS is
    refused: its key alone would verify the PKCS#1 v1.5 signatures the certificate forbids."""
    digest = _digest(pem)
    cached = _CERT_KEYS.get(digest)
    if cached is None:
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            pss_only = certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS
            der = certificate.public_bytes(serialization.Encoding.DER)
            public = certificate.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            key = xmlsec.Key.from_memory(public, xmlsec.constants.KeyDataFormatPem)
        except (ValueError, UnsupportedAlgorithm, xmlsec.Error):
            raise SamlError("invalid_response",
                            "a pinned IdP certificate of this connection is unreadable") from None
        if pss_only:
            raise SamlError("invalid_response", _PSS_ONLY)
        cached = (key, der)
        _store(_CERT_KEYS, digest, cached)
    return cached


def xmlsec_private_key(pem: str) -> xmlsec.Key:
    """The SP private key as an xmlsec key (to decrypt EncryptedAssertions)."""
    digest = _digest(pem)
    cached = _XMLSEC_PRIVATE.get(digest)
    if cached is None:
        try:
            cached = xmlsec.Key.from_memory(pem.encode(), xmlsec.constants.KeyDataFormatPem)
        except xmlsec.Error:
            raise SamlError("decryption_failed",
                            "the SP private key of this connection is unreadable") from None
        _store(_XMLSEC_PRIVATE, digest, cached)
    return cached


def private_key(pem: str) -> PrivateKeyTypes:
    """The SP private key for `cryptography` (to sign AuthnRequests)."""
    digest = _digest(pem)
    cached = _PRIVATE.get(digest)
    if cached is None:
        try:
            cached = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise SamlError("invalid_response",
                            "the SP private key of this connection is unreadable") from None
        _store(_PRIVATE, digest, cached)
    return cached


def certificate_der_b64(pem: str) -> str:
    """The base64 DER body of a PEM certificate, as metadata's X509Certificate carries it."""
    return base64.b64encode(certificate_key(pem)[1]).decode()


def pem_from_b64_der(text: str) -> str:
    """A PEM certificate from metadata's base64 X509Certificate (whitespace tolerated).
    Raises SamlError ``invalid_metadata``."""
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise SamlError("invalid_metadata",
                        "a certificate in the IdP metadata is unreadable") from None
    return cert.public_bytes(serialization.Encoding.PEM).decode()
