"""The MFA rule of ``core/auth_context.py``: what satisfies ``require_mfa``, what is requested,
what a configuration may list, and how the asserted values are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitprov.core.auth_context import (
    AuthContext,
    MfaRequirement,
    check_accepted_auth_contexts,
    with_auth_context,
)
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import load_policy

OKTA_2FA = "urn:okta:loa:2fa:any"
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


@pytest.mark.parametrize(("context", "expected"), [
    (AuthContext(acr=OKTA_2FA), True),
    (AuthContext(acr="urn:okta:loa:1fa:pwd", amr=("pwd", "mfa")), True),
    (AuthContext(class_refs=(TWO_FACTOR,)), True),
    (AuthContext(acr="urn:okta:loa:1fa:pwd", amr=("pwd",)), False),
    (AuthContext(acr="MFA"), False),  # exact, case-sensitive
    (AuthContext(), False),
])
def test_accepted_when_the_acr_an_amr_or_a_class_ref_is_listed(context: AuthContext,
                                                               expected: bool) -> None:
    requirement = MfaRequirement((OKTA_2FA, "mfa", TWO_FACTOR))
    assert expected == requirement.satisfied_by(context)


def test_require_mfa_without_values_accepts_the_amr_mfa() -> None:
    requirement = MfaRequirement.of({"require_mfa": True, "accepted_auth_contexts": []})
    assert requirement == MfaRequirement(("mfa",))
    assert requirement.satisfied_by(AuthContext(amr=("pwd", "mfa")))
    assert not requirement.satisfied_by(AuthContext(amr=("pwd", "otp")))


@pytest.mark.parametrize("config", [{}, {"require_mfa": False}, {"require_mfa": "true"},
                                    {"accepted_auth_contexts": ["mfa"]}])
def test_no_requirement_unless_require_mfa_is_true(config: dict[str, object]) -> None:
    assert MfaRequirement.of(config) is None


def test_amr_names_are_not_requested_as_acr_values() -> None:
    requirement = MfaRequirement((OKTA_2FA, "mfa", "phr", "hwk", "2"))
    assert (OKTA_2FA, "phr", "2") == requirement.requested()
    assert () == MfaRequirement(("mfa", "otp")).requested()


def test_the_refusal_says_what_was_reported_and_what_is_accepted() -> None:
    reason = MfaRequirement((OKTA_2FA,)).refusal(AuthContext(acr="urn:okta:loa:1fa:pwd",
                                                             amr=("pwd",)))
    assert "acr urn:okta:loa:1fa:pwd; amr pwd" in reason and f"accepted: {OKTA_2FA}" in reason
    assert "reported: nothing" in MfaRequirement().refusal(AuthContext())


@pytest.mark.parametrize(("values", "kwargs", "message"), [
    (["mfa"], {"require_mfa": False}, "is used only with require_mfa"),
    ("mfa", {"require_mfa": True}, "must be a list"),
    (["two words"], {"require_mfa": True}, "no spaces"),
    ([""], {"require_mfa": True}, "1 to 512"),
    (["x" * 513], {"require_mfa": True}, "1 to 512"),
    (["caf\u00e9"], {"require_mfa": True}, "printable ASCII"),
    ([5], {"require_mfa": True}, "is not a value"),
    ([f"v{i}" for i in range(21)], {"require_mfa": True}, "at most 20"),
    (["mfa"], {"require_mfa": True, "uris_only": True}, "not a SAML AuthnContextClassRef URI"),
    ([], {"require_mfa": True, "uris_only": True}, "needs at least one"),
])
def test_bad_accepted_values_are_refused_with_a_reason(values: object,
                                                       kwargs: dict[str, bool],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_accepted_auth_contexts(values, **kwargs)


def test_accepted_values_keep_their_order_without_duplicates() -> None:
    assert (OKTA_2FA, "mfa") == check_accepted_auth_contexts([OKTA_2FA, "mfa", OKTA_2FA],
                                                             require_mfa=True)
    assert () == check_accepted_auth_contexts(None, require_mfa=False)


@pytest.mark.parametrize(("claims", "expected"), [
    ({"acr": "1", "amr": ["pwd", "otp"]}, AuthContext(acr="1", amr=("pwd", "otp"))),
    ({"amr": "mfa"}, AuthContext(amr=("mfa",))),  # a lone string, as some providers send
    ({"acr": 2, "amr": ["pwd", 7, None, ""]}, AuthContext(amr=("pwd",))),
    ({"acr": "", "amr": {"mfa": True}}, AuthContext()),
    ({"amr": [f"m{i}" for i in range(100)]}, AuthContext(amr=tuple(f"m{i}"
                                                                   for i in range(32)))),
])
def test_the_id_token_values_are_read_defensively(claims: dict[str, object],
                                                  expected: AuthContext) -> None:
    assert expected == AuthContext.from_id_token(claims)


def test_the_claim_reads_back_what_it_wrote_and_nothing_else() -> None:
    context = AuthContext(acr="a", amr=("pwd", "mfa"), class_refs=(TWO_FACTOR,))
    assert context == AuthContext.from_claim(context.as_claim())
    assert AuthContext() == AuthContext.from_claim(["mfa"])
    assert AuthContext(amr=("mfa",)) == AuthContext.from_claim({"acr": 3, "amr": ["mfa", 1],
                                                                "class_refs": "x"})


def test_the_claim_replaces_one_the_idp_sent() -> None:
    identity = ExternalIdentity("https://idp", "u-1", {"email": "a@b.example",
                                                        "auth_context": {"amr": ["mfa"]}})
    claims = with_auth_context(identity, AuthContext(amr=("pwd",))).claims
    assert {"email": "a@b.example",
            "auth_context": {"acr": None, "amr": ["pwd"], "class_refs": []}} == claims


def test_the_readme_admin_rules_read_the_claim() -> None:
    """The README's "admins must use MFA" mapping, as printed: the role needs amr mfa, and an
    admin without it is denied while others sign in."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split('so "admins must use MFA"', 1)[1].split("```yaml\n", 1)[1]
    policy = load_policy(block.split("```", 1)[0], "README.md")

    def outcome(groups: list[str], amr: list[str]) -> tuple[bool, frozenset[str]]:
        claims = {"groups": groups, **with_auth_context(
            ExternalIdentity("https://idp", "u"), AuthContext(amr=tuple(amr))).claims}
        mapped = policy.map(claims)
        denied = any(e.kind == "deny" and e.outcome == "denied" for e in mapped.trace)
        return denied, frozenset(r.role for r in mapped.grants)

    assert (False, frozenset({"admin"})) == outcome(["IT Admins"], ["pwd", "mfa"])
    assert (True, frozenset()) == outcome(["IT Admins"], ["pwd"])
    assert (False, frozenset()) == outcome(["Nurses"], ["pwd"])
