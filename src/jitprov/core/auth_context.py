"""How a person signed in, as the IdP asserted it, and a connection's demand for multi-factor
authentication (``require_mfa``): one rule for every connection kind.

Where the values come from (read by the protocol adapters from what they verified only):

- OpenID Connect Core 1.0 section 2: the ID token's ``acr`` (one string) and ``amr`` (a list
  of strings); section 3.1.2.1: ``acr_values``, space-separated, in order of preference.
- RFC 8176: the registered ``amr`` values (``pwd``, ``otp``, ``mfa``, ``hwk``, ``swk``,
  ``fpt``...).
- SAML 2.0 Core section 2.7.2.2: the AuthnStatement's ``AuthnContext/AuthnContextClassRef``;
  section 3.3.2.2.1: ``RequestedAuthnContext`` in the AuthnRequest.

The rule. A connection with ``require_mfa`` lists its ``accepted_auth_contexts``; a sign-in
is accepted when its ``acr`` is one of them, OR one of its ``amr`` values is, OR one of its
SAML class references is (exact, case-sensitive string comparison). With no value listed,
``require_mfa`` accepts the amr ``mfa``. On the way out, the listed values that are not RFC
8176 amr names are requested (``acr_values`` / ``RequestedAuthnContext``): an amr name is a
method, not a context class, and a provider may refuse an ``acr_values`` it does not know.

Every login of an OIDC or SAML connection carries what was asserted to the mapping as the
claim ``auth_context`` = ``{"acr": ..., "amr": [...], "class_refs": [...]}``, set by jitprov
(an IdP claim or attribute of that name is replaced), so rules can read it:
``contains(auth_context.amr, 'mfa')``. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from jitprov.core.identity import ExternalIdentity

#: the claim the mapping reads
AUTH_CONTEXT_CLAIM = "auth_context"
#: RFC 8176 section 2 (the IANA "Authentication Method Reference Values" registry)
AMR_VALUES = frozenset({"face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin",
                        "pop", "pwd", "rba", "retina", "sc", "sms", "swk", "tel", "user", "vbm",
                        "wia"})
#: what ``require_mfa`` accepts when no value is listed (RFC 8176: "multiple-factor
#: authentication")
DEFAULT_ACCEPTED = ("mfa",)
MAX_ACCEPTED = 20
MAX_VALUE_CHARS = 512
#: an IdP's long lists are cut: what no rule can need
MAX_ASSERTED = 32
#: printable ASCII without spaces: ``acr_values`` is space-separated (Core 3.1.2.1)
_VALUE = re.compile(rf"[\x21-\x7e]{{1,{MAX_VALUE_CHARS}}}")
#: a URI's scheme: SAML class references are URIs (Core 2.7.2.2, anyURI)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What the IdP said about the sign-in: the OIDC ``acr`` and ``amr``, the SAML
    AuthnContextClassRefs. Empty when it said nothing."""

    acr: str | None = None
    amr: tuple[str, ...] = ()
    class_refs: tuple[str, ...] = ()

    @classmethod
    def from_id_token(cls, claims: Mapping[str, object]) -> AuthContext:
        """From a verified ID token's claims (never userinfo: Core 5.3.2 lets userinfo be
        unsigned). An ``acr`` that is not a string, and ``amr`` items that are not strings,
        are left out; a lone string ``amr`` counts as a list of one."""
        acr = claims.get("acr")
        amr = claims.get("amr")
        items = [amr] if isinstance(amr, str) else amr if isinstance(amr, list) else []
        return cls(acr=acr if isinstance(acr, str) and acr else None,
                   amr=tuple(v for v in items if isinstance(v, str) and v)[:MAX_ASSERTED])

    @classmethod
    def from_class_refs(cls, class_refs: list[str]) -> AuthContext:
        """From the AuthnContextClassRefs of a verified SAML assertion."""
        return cls(class_refs=tuple(v for v in class_refs if v)[:MAX_ASSERTED])

    @classmethod
    def from_claim(cls, value: object) -> AuthContext:
        """Read back the claim :meth:`as_claim` wrote (a recorded login, a dry run); anything
        else is an empty context."""
        if not isinstance(value, Mapping):
            return cls()
        acr = value.get("acr")

        def strings(name: str) -> tuple[str, ...]:
            items = value.get(name)
            if not isinstance(items, list):
                return ()
            return tuple(v for v in items if isinstance(v, str))[:MAX_ASSERTED]

        return cls(acr=acr if isinstance(acr, str) else None, amr=strings("amr"),
                   class_refs=strings("class_refs"))

    def as_claim(self) -> dict[str, object]:
        return {"acr": self.acr, "amr": list(self.amr), "class_refs": list(self.class_refs)}

    def describe(self) -> str:
        """What was asserted, for a refusal page and the audit log (no secret in it)."""
        parts = []
        if self.acr is not None:
            parts.append(f"acr {self.acr[:100]}")
        if self.amr:
            parts.append("amr " + ", ".join(v[:40] for v in self.amr[:8]))
        if self.class_refs:
            parts.append("AuthnContextClassRef " + ", ".join(v[:200] for v in
                                                              self.class_refs[:4]))
        return "; ".join(parts) or "nothing"


def with_auth_context(identity: ExternalIdentity, context: AuthContext) -> ExternalIdentity:
    """``identity`` with the claim ``auth_context`` set to ``context`` (replacing any claim
    of that name the IdP sent)."""
    return replace(identity, claims={**identity.claims, AUTH_CONTEXT_CLAIM: context.as_claim()})


@dataclass(frozen=True, slots=True)
class MfaRequirement:
    """A connection's ``require_mfa``, with the values it accepts."""

    accepted: tuple[str, ...] = DEFAULT_ACCEPTED

    @classmethod
    def of(cls, config: Mapping[str, object]) -> MfaRequirement | None:
        """The requirement of a connection's (validated) config, None when it has none."""
        if config.get("require_mfa") is not True:
            return None
        listed = config.get("accepted_auth_contexts")
        values = tuple(v for v in listed if isinstance(v, str)) if isinstance(
            listed, list | tuple) else ()
        return cls(values or DEFAULT_ACCEPTED)

    def satisfied_by(self, context: AuthContext) -> bool:
        """The rule of this module: the acr, an amr value or a class reference is listed."""
        accepted = set(self.accepted)
        return ((context.acr is not None and context.acr in accepted)
                or any(v in accepted for v in context.amr)
                or any(v in accepted for v in context.class_refs))

    def requested(self) -> tuple[str, ...]:
        """What to ask the IdP for (``acr_values``, ``RequestedAuthnContext``): the accepted
        values that are not RFC 8176 amr names, in the order listed."""
        return tuple(v for v in self.accepted if v not in AMR_VALUES)

    def refusal(self, context: AuthContext) -> str:
        """The reason shown to the person refused, and audited."""
        return ("this sign-in needs multi-factor authentication, and the identity provider "
                f"did not report it (it reported: {context.describe()}; accepted: "
                f"{', '.join(v[:100] for v in self.accepted[:8])}). Sign in again with "
                "your second factor, or ask your administrator")


def check_accepted_auth_contexts(values: object, *, require_mfa: bool,
                                 uris_only: bool = False) -> tuple[str, ...]:
    """Validate a configuration's ``accepted_auth_contexts`` (duplicates dropped, order
    kept). ``uris_only``: SAML, where a value is an AuthnContextClassRef URI and no value
    means nothing could ever match. Raises ValueError with a one-line reason."""
    if values is None:
        values = []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise ValueError("must be a list of acr / amr / AuthnContextClassRef values")
    if values and not require_mfa:
        raise ValueError("is used only with require_mfa (--require-mfa)")
    if len(values) > MAX_ACCEPTED:
        raise ValueError(f"at most {MAX_ACCEPTED} values")
    kept: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise ValueError(f"{str(value)[:60]!r} is not a value: 1 to {MAX_VALUE_CHARS} "
                             "printable ASCII characters, no spaces")
        if uris_only and not _URI.fullmatch(value):
            raise ValueError(f"{value[:60]!r} is not a SAML AuthnContextClassRef URI (e.g. "
                             "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract)")
        if value not in kept:
            kept.append(value)
    if require_mfa and uris_only and not kept:
        raise ValueError("require_mfa on a SAML connection needs at least one accepted "
                         "AuthnContextClassRef (--auth-context URI): SAML has no standard "
                         "multi-factor class")
    return tuple(kept)
