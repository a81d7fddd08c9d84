"""EncryptedAssertion (SAML Core 6, XML Encryption 1.1), decrypted with the SP private key."""

from __future__ import annotations

import xmlsec
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.keys import xmlsec_private_key
from jitprov.protocols.saml.parsing import DS, SAML, XENC

_ENCRYPTED_DATA = f"{{{XENC}}}EncryptedData"
_ENCRYPTED_KEY = f"{{{XENC}}}EncryptedKey"
_ENCRYPTION_METHOD = f"{{{XENC}}}EncryptionMethod"
_CIPHER_REFERENCE = f"{{{XENC}}}CipherReference"
_KEY_INFO = f"{{{DS}}}KeyInfo"
_RETRIEVAL_METHOD = f"{{{DS}}}RetrievalMethod"
_ASSERTION = f"{{{SAML}}}Assertion"

#: block ciphers for the assertion
DATA_ALGORITHMS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
})
#: key transport: RSA-OAEP only (RSA PKCS#1 v1.5 is open to Bleichenbacher's attack)
KEY_ALGORITHMS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
})


def decrypt_assertion(encrypted: etree._Element, private_key_pem: str) -> etree._Element:
    """Decrypt ``saml:EncryptedAssertion`` in place and return the Assertion it held.

    An EncryptedKey given as a sibling of EncryptedData (Core 6.2 allows it) is moved into
    EncryptedData's KeyInfo, where xmlsec looks. RetrievalMethod and CipherReference (fetching
    anything) are refused. Raises SamlError ``decryption_failed`` or ``algorithm_forbidden``.
    """
    datas = [c for c in encrypted if c.tag == _ENCRYPTED_DATA]
    if len(datas) != 1:
        raise SamlError("invalid_response", "the EncryptedAssertion needs one EncryptedData")
    data = datas[0]
    if next(encrypted.iter(_CIPHER_REFERENCE), None) is not None:
        raise SamlError("xml_forbidden", "the EncryptedAssertion refers outside itself")
    siblings = [c for c in encrypted if c.tag == _ENCRYPTED_KEY]
    local_ids = {f"#{key.get('Id')}" for key in siblings if key.get("Id")}
    for retrieval in list(encrypted.iter(_RETRIEVAL_METHOD)):
        # Shibboleth's layout: KeyInfo/RetrievalMethod URI="#key-id" -> a sibling EncryptedKey,
        # which is moved into KeyInfo below. Anything else would make xmlsec fetch a URI.
        if retrieval.get("URI") not in local_ids:
            raise SamlError("xml_forbidden", "the EncryptedAssertion refers outside itself")
        retrieval.getparent().remove(retrieval)
    if siblings:
        key_info = next((c for c in data if c.tag == _KEY_INFO), None)
        if key_info is None:
            key_info = etree.Element(_KEY_INFO)
            method = next((c for c in data if c.tag == _ENCRYPTION_METHOD), None)
            data.insert(0 if method is None else data.index(method) + 1, key_info)
        for node in siblings:
            key_info.append(node)
    _check_algorithm(data, DATA_ALGORITHMS, "content")
    keys = list(data.iter(_ENCRYPTED_KEY))
    if not keys:
        raise SamlError("decryption_failed", "the EncryptedAssertion carries no EncryptedKey")
    for key in keys:
        _check_algorithm(key, KEY_ALGORITHMS, "key transport")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec_private_key(private_key_pem))
    ctx = xmlsec.EncryptionContext(manager)
    try:
        ctx.decrypt(data)
    except xmlsec.Error:
        raise SamlError("decryption_failed", "the assertion could not be decrypted with this "
                                             "connection's SP key") from None
    assertions = [c for c in encrypted if c.tag == _ASSERTION]
    others = [c for c in encrypted if isinstance(c.tag, str) and c.tag not in (
        _ASSERTION, _ENCRYPTED_KEY)]
    if len(assertions) != 1 or others:
        raise SamlError("invalid_response", "the EncryptedAssertion did not hold one Assertion")
    return assertions[0]


def _check_algorithm(node: etree._Element, allowed: frozenset[str], what: str) -> None:
    method = next((c for c in node if c.tag == _ENCRYPTION_METHOD), None)
    algorithm = method.get("Algorithm") if method is not None else None
    if algorithm not in allowed:
        raise SamlError("algorithm_forbidden",
                        f"{what} encryption algorithm {(algorithm or 'none')[:100]!r} is not "
                        "allowed")
