"""The scope check: which claims a mapping reads (top-level claims of each expression, named
by the rule that reads them) and which of them the requested scopes are unlikely to bring,
by OpenID Connect Core 5.4 and the provider's discovery document."""

from __future__ import annotations

import pytest

from jitprov.core.mapping import load_policy
from jitprov.core.mapping.expressions import compile_expression
from jitprov.protocols.oidc import ProviderMetadata, check_scopes
from jitprov.testing.builders import HOSPITAL

ISSUER = "https://idp.example"


def metadata(**document: object) -> ProviderMetadata:
    return ProviderMetadata.parse({
        "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks", **document},
        ISSUER)


@pytest.mark.parametrize(("expression", "claims"), [
    ("email", {"email"}),
    ("address.country", {"address"}),
    ("contains(groups, 'Nurses') || hd == 'example.org'", {"groups", "hd"}),
    ("groups[?starts_with(@, 'ward-')] | length(@) > `0`", {"groups"}),
    ("sort_by(items, &name)[0].value", {"items"}),
    ("{a: b, c: d.e}", {"b", "d"}),
    ("!disabled && length(roles) > `0`", {"disabled", "roles"}),
    ("join(' ', [given_name, family_name])", {"given_name", "family_name"}),
    ("`true`", set()),
])
def test_top_level_claims_of_an_expression(expression: str, claims: set[str]) -> None:
    assert compile_expression(expression).top_level_claims() == frozenset(claims)


@pytest.mark.parametrize("expression", ["@", "*", "[*].x", "values(@)"])
def test_an_expression_reading_the_whole_document_names_no_claim(expression: str) -> None:
    assert compile_expression(expression).top_level_claims() is None


def test_claim_readers_name_the_rule_and_its_line() -> None:
    readers = load_policy(HOSPITAL.format(linking="never")).claim_readers()
    assert readers["groups"] == ("groups (line 5)", "roles rule nurses (line 9)",
                                 "roles rule charge-nurses (line 12)")
    assert readers["email_verified"] == ("linking.email_verified",
                                         "deny rule unverified (line 17)")
    assert set(readers) == {"department", "email", "email_verified", "groups", "name"}


def test_the_implicit_groups_field_reads_nothing() -> None:
    """Without a ``groups:`` line the claim is still read (never mirrored): no warning."""
    assert "groups" not in load_policy("profile:\n  email: email\n").claim_readers()


def test_groups_without_a_groups_scope_is_named_when_the_provider_offers_one() -> None:
    readers = {"groups": ("roles rule nurses (line 9)",), "email": ("profile.email",)}
    found = check_scopes(readers, ["openid", "email", "profile"],
                         metadata(scopes_supported=["openid", "email", "profile", "groups"]))
    assert [(w.claim, w.readers) for w in found] == [("groups", ("roles rule nurses (line 9)",))]
    assert "the provider offers the scope 'groups', which is not requested" in str(found[0])
    assert "roles rule nurses (line 9)" in str(found[0])


def test_requesting_the_groups_scope_silences_the_warning() -> None:
    readers = {"groups": ("roles rule nurses",)}
    assert check_scopes(readers, ["openid", "groups"],
                        metadata(scopes_supported=["openid", "groups"])) == []
    assert check_scopes(readers, ["openid", "okta.groups"], None) == []


def test_groups_without_any_discovery_hint_is_still_named() -> None:
    [warning] = check_scopes({"groups": ("roles rule nurses",)}, ["openid", "email"], None)
    assert "no requested scope asks for it" in warning.advice


def test_a_standard_claim_needs_its_standard_scope() -> None:
    found = check_scopes({"email": ("profile.email",), "name": ("profile.name",),
                          "phone_number": ("profile.phone",)}, ["openid", "profile"], None)
    assert [(w.claim, "'email'" in w.advice or "'phone'" in w.advice) for w in found] == [
        ("email", True), ("phone_number", True)]


def test_a_claim_the_provider_does_not_list_is_named() -> None:
    found = check_scopes({"department": ("profile.department",), "locale_x": ("p.l",)},
                         ["openid"], metadata(claims_supported=["sub", "department"]))
    assert [w.claim for w in found] == ["locale_x"]
    assert "claims_supported" in found[0].advice


def test_claims_no_scope_governs_are_never_named() -> None:
    readers = {c: ("deny rule x",) for c in ("sub", "acr", "amr", "hd", "tid", "scim_groups")}
    assert check_scopes(readers, ["openid"], metadata(claims_supported=["sub"])) == []
