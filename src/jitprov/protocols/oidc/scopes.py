"""Which claims the requested scopes are likely to bring: the standard scopes of OpenID
Connect Core 1.0 section 5.4, and what the provider's discovery document says it offers
(``scopes_supported``, ``claims_supported``). A check made when a connection is added, so a
rule on a claim that will never arrive (``groups`` without a groups scope) is named then,
not discovered when nobody gets the role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jitprov.protocols.oidc.provider import ProviderMetadata

#: OpenID Connect Core 1.0 section 5.4: the claims each standard scope requests
STANDARD_SCOPE_CLAIMS: Mapping[str, frozenset[str]] = {
    "profile": frozenset({"name", "family_name", "given_name", "middle_name", "nickname",
                          "preferred_username", "profile", "picture", "website", "gender",
                          "birthdate", "zoneinfo", "locale", "updated_at"}),
    "email": frozenset({"email", "email_verified"}),
    "address": frozenset({"address"}),
    "phone": frozenset({"phone_number", "phone_number_verified"}),
}
#: claims no scope governs: the ID token's own (Core 2), and what jitprov adds itself
UNSCOPED_CLAIMS = frozenset({"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr",
                             "amr", "azp", "sid", "tid", "hd", "scim_groups", "auth_context"})
#: claims that providers send only when asked by a scope or configured to (Okta's ``groups``
#: scope, Keycloak's group mapper, Entra's groupMembershipClaims): silence is likely
GROUP_LIKE_CLAIMS = frozenset({"groups", "roles"})


@dataclass(frozen=True, slots=True)
class ScopeWarning:
    """A claim the mapping reads that the requested scopes are unlikely to bring."""

    claim: str
    readers: tuple[str, ...]
    advice: str

    def __str__(self) -> str:
        return (f"claim {self.claim!r} (read by {', '.join(self.readers)}) is likely "
                f"absent: {self.advice}")


def check_scopes(readers: Mapping[str, Sequence[str]], scopes: Sequence[str],
                 metadata: ProviderMetadata | None) -> list[ScopeWarning]:
    """The claims of ``readers`` (claim -> the parts of the mapping that read it) that the
    ``scopes`` are unlikely to bring, with what to do about each. ``metadata`` may be None
    (the provider was not asked): then only the standard scopes are checked."""
    requested = {scope.lower() for scope in scopes}
    offered = metadata.scopes_supported if metadata is not None else ()
    listed = set(metadata.claims_supported) if metadata is not None else set()
    warnings: list[ScopeWarning] = []
    for claim, who in sorted(readers.items()):
        if claim in UNSCOPED_CLAIMS:
            continue
        standard = next((scope for scope, claims in STANDARD_SCOPE_CLAIMS.items()
                         if claim in claims), None)
        if standard is not None:
            if standard not in requested:
                warnings.append(ScopeWarning(claim, tuple(who), f"add the scope "
                                             f"{standard!r}, which brings it (OpenID Connect "
                                             "Core 5.4), to the requested scopes"))
            continue
        if any(claim.lower() in scope for scope in requested):
            continue  # a scope named after it (groups, okta.groups...) is requested
        named = [scope for scope in offered if claim.lower() in scope.lower()]
        if named:
            warnings.append(ScopeWarning(claim, tuple(who), f"the provider offers the scope "
                                         f"{named[0]!r}, which is not requested"))
        elif listed and claim not in listed:
            warnings.append(ScopeWarning(claim, tuple(who), "the provider does not list it in "
                                         "its claims_supported, and no requested scope is "
                                         "named after it"))
        elif claim in GROUP_LIKE_CLAIMS:
            warnings.append(ScopeWarning(claim, tuple(who), "no requested scope asks for it; "
                                         "it arrives only if the provider is configured to "
                                         "put it in every token (a groups claim or mapper on "
                                         "a default scope)"))
    return warnings
