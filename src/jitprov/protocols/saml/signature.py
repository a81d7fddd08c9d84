"""XML Signature checks around libxmlsec1: what SAML allows, then xmlsec's verification.

Before xmlsec sees a signature, its shape is checked (XML-DSig Core 4; SAML Core 5.4): an
enveloped signature, a direct child of the element it signs, exactly one Reference whose URI is
``#`` + that element's own ID, only the enveloped-signature and canonicalisation transforms,
and an allowlisted SignatureMethod and DigestMethod. XSLT, XPath, XPath-Filter 2.0 and every
other transform are refused before any is run. The key is always one of the pinned IdP
certificates, set explicitly on the context: xmlsec then never reads ``KeyInfo``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import xmlsec
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.keys import certificate_key
from jitprov.protocols.saml.parsing import DS

_SIGNATURE = f"{{{DS}}}Signature"
_SIGNED_INFO = f"{{{DS}}}SignedInfo"
_C14N_METHOD = f"{{{DS}}}CanonicalizationMethod"
_SIGNATURE_METHOD = f"{{{DS}}}SignatureMethod"
_REFERENCE = f"{{{DS}}}Reference"
_TRANSFORMS = f"{{{DS}}}Transforms"
_TRANSFORM = f"{{{DS}}}Transform"
_DIGEST_METHOD = f"{{{DS}}}DigestMethod"
_X509_CERTIFICATE = f"{{{DS}}}X509Certificate"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#: canonicalisation without comments only: "#WithComments" variants are refused
C14N_METHODS = frozenset({EXC_C14N, C14N_10, C14N_11})
TRANSFORMS = C14N_METHODS | {ENVELOPED}

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SIGNATURE_METHODS = frozenset({
    RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
DIGEST_METHODS = frozenset({
    SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})

_T = xmlsec.constants
#: the same allowlists, enforced a second time by xmlsec itself
_XMLSEC_REFERENCE_TRANSFORMS = (
    _T.TransformEnveloped, _T.TransformExclC14N, _T.TransformInclC14N, _T.TransformInclC14N11,
    _T.TransformSha256, _T.TransformSha384, _T.TransformSha512)
_XMLSEC_SIGNATURE_TRANSFORMS = (
    _T.TransformExclC14N, _T.TransformInclC14N, _T.TransformInclC14N11,
    _T.TransformRsaSha256, _T.TransformRsaSha384, _T.TransformRsaSha512,
    _T.TransformEcdsaSha256, _T.TransformEcdsaSha384, _T.TransformEcdsaSha512)


def signature_of(element: etree._Element) -> etree._Element | None:
    """The element's own enveloped ``ds:Signature`` (a direct child), or None.
    More than one is refused (``signature_wrapping``)."""
    found = [child for child in element if child.tag == _SIGNATURE]
    if len(found) > 1:
        raise SamlError("signature_wrapping", "an element carries more than one Signature")
    return found[0] if found else None


def _algorithm(parent: etree._Element, tag: str, what: str) -> str:
    nodes = [child for child in parent if child.tag == tag]
    if len(nodes) != 1:
        raise SamlError("signature_invalid", f"the signature needs exactly one {what}")
    return nodes[0].get("Algorithm") or ""


def check_signature_shape(signature: etree._Element, signed: etree._Element, *,
                          allow_sha1: bool) -> None:
    """Refuse, before verifying, any signature SAML has no use for (see the module docstring).

    ``signed`` is the element the signature must cover: its parent, by its own ``ID``.
    """
    if signature.getparent() is not signed:
        raise SamlError("signature_wrapping", "the signature is not enveloped in the element "
                                              "it must sign")
    element_id = signed.get("ID")
    if not element_id:
        raise SamlError("invalid_response", f"the signed {etree.QName(signed).localname} "
                                            "has no ID")
    infos = [child for child in signature if child.tag == _SIGNED_INFO]
    if len(infos) != 1:
        raise SamlError("signature_invalid", "the signature needs exactly one SignedInfo")
    info = infos[0]
    c14n = _algorithm(info, _C14N_METHOD, "CanonicalizationMethod")
    if c14n not in C14N_METHODS:
        raise SamlError("algorithm_forbidden",
                        f"canonicalisation method {c14n[:100]!r} is not allowed")
    method = _algorithm(info, _SIGNATURE_METHOD, "SignatureMethod")
    if method not in SIGNATURE_METHODS and not (allow_sha1 and method == RSA_SHA1):
        raise SamlError("algorithm_forbidden",
                        f"signature method {method[:100]!r} is not allowed")
    references = [child for child in info if child.tag == _REFERENCE]
    if len(references) != 1:
        raise SamlError("signature_wrapping", "the signature must have exactly one Reference")
    reference = references[0]
    if reference.get("URI") != f"#{element_id}":
        raise SamlError("signature_wrapping", "the signature's Reference does not point at the "
                                              "element that carries it")
    for transforms in (child for child in reference if child.tag == _TRANSFORMS):
        for transform in transforms:
            if not isinstance(transform.tag, str):
                continue
            algorithm = transform.get("Algorithm") or ""
            if transform.tag != _TRANSFORM or algorithm not in TRANSFORMS:
                raise SamlError("algorithm_forbidden",
                                f"signature transform {algorithm[:100]!r} is not allowed")
    digest = _algorithm(reference, _DIGEST_METHOD, "DigestMethod")
    if digest not in DIGEST_METHODS and not (allow_sha1 and digest == SHA1):
        raise SamlError("algorithm_forbidden", f"digest method {digest[:100]!r} is not allowed")


def verify_signature(signature: etree._Element, signed: etree._Element,
                     pinned_certs: Sequence[str], *, allow_sha1: bool) -> None:
    """Check the shape, then verify with each pinned certificate until one verifies.

    The document's ``ID`` attributes must already be registered (``xmlsec.tree.add_ids``).
    Raises SamlError ``signature_invalid`` when no pinned certificate verifies it.
    """
    check_signature_shape(signature, signed, allow_sha1=allow_sha1)
    keys = [certificate_key(pem) for pem in pinned_certs]
    hint = _certificate_hint(signature) if len(keys) > 1 else None
    if hint is not None:  # try the certificate the IdP names first: a hint, never a key
        keys.sort(key=lambda pair: pair[1] != hint)
    for key, _der in keys:
        ctx = xmlsec.SignatureContext()
        for transform in _XMLSEC_REFERENCE_TRANSFORMS:
            ctx.enable_reference_transform(transform)
        for transform in _XMLSEC_SIGNATURE_TRANSFORMS:
            ctx.enable_signature_transform(transform)
        if allow_sha1:
            ctx.enable_reference_transform(_T.TransformSha1)
            ctx.enable_signature_transform(_T.TransformRsaSha1)
        ctx.key = key
        try:
            ctx.verify(signature)
        except xmlsec.Error:
            continue
        return
    raise SamlError("signature_invalid",
                    "the signature does not verify with the IdP's pinned certificate(s)")


def _certificate_hint(signature: etree._Element) -> bytes | None:
    node = signature.find(f".//{_X509_CERTIFICATE}")
    if node is None or not node.text:
        return None
    try:
        return base64.b64decode("".join(node.text.split()))
    except ValueError:
        return None
