"""Hypothesis strategies shared by the suite (one module, as attrs keeps them).

Add strategies here rather than in test modules, so properties of different layers draw from
the same shapes of data.
"""

from __future__ import annotations

from hypothesis import strategies as st

from jitprov.core.identity import Account, PendingGrant, RoleGrant
from jitprov.core.mapping.result import Denial, MappedIdentity, PolicySettings, RuleGrantIntent

#: Any JSON value: what an IdP may put in a claim, bounded so examples stay small.
json_values: st.SearchStrategy[object] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)

#: Any JSON object of claims, with arbitrary keys.
arbitrary_claims: st.SearchStrategy[dict[str, object]] = st.dictionaries(
    st.text(max_size=15), json_values, max_size=8
)

_group_names = st.sampled_from(["Nurses", "Charge Nurses", "Doctors", "admin", "", "nurses"])

#: Claims shaped like an OIDC login, each claim present or not, of the right type or not, so
#: that rules on ``groups`` and ``email_verified`` match, miss and fail in every combination.
login_claims: st.SearchStrategy[dict[str, object]] = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.text(min_size=1, max_size=10),
        "email": st.emails() | json_values,
        "email_verified": st.booleans() | st.sampled_from(["true", "false", "True"]) | json_values,
        "name": st.text(max_size=20) | json_values,
        "given_name": st.text(max_size=10),
        "family_name": st.text(max_size=10) | st.none(),
        "department": st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=3),
        "groups": st.lists(_group_names | json_values, max_size=5) | _group_names | json_values,
    },
)

#: Either of the two above.
claims: st.SearchStrategy[dict[str, object]] = login_claims | arbitrary_claims

_mapping_keys = st.sampled_from(
    ["profile", "groups", "roles", "default", "rules", "id", "grant", "when", "approval", "deny",
     "reason", "linking", "by_email", "email_verified", "on_login", "groups_missing", "email",
     "name", "Name", "whne"]
)
_mapping_scalars = st.sampled_from(
    ["email", "staff", "b c", "required", "none", "never", "verified_only", "pending", "sync",
     "revoke", "r1", "default", "contains(groups, 'A')", "groups[", "&&", "foo(a)", ""]
) | st.none() | st.booleans() | st.integers(-2, 2)

#: Documents shaped like a mapping file (right and wrong keys, values and nesting), to be dumped
#: as YAML: they reach validation and compilation, where random text stops at the YAML parser.
mapping_documents: st.SearchStrategy[object] = st.recursive(
    _mapping_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(_mapping_keys, children, max_size=4),
    max_leaves=15,
)


# -- accounts and mapped identities, for properties of decide() --------------------------------


_roles = st.sampled_from(["staff", "nurse", "charge-nurse", "admin", "pharmacist"])
_rule_sources = st.sampled_from(["rule:default", "rule:nurses", "rule:r2", "rule:charge"])
_any_sources = _rule_sources | st.sampled_from(["scim", "manual", "approval"])
_fields = st.sampled_from(["email", "name", "department"])
_values = st.sampled_from(["a@x.org", "Ana", "Ward 3", "ICU", "b@x.org"])
_groups = st.frozensets(st.sampled_from(["Nurses", "Porters", "Charge Nurses"]), max_size=3)

policy_settings: st.SearchStrategy[PolicySettings] = st.builds(
    PolicySettings,
    on_login=st.sampled_from(["sync", "create_only"]),
    link_by_email=st.sampled_from(["never", "verified_email", "pending"]),
    groups_missing=st.sampled_from(["keep", "revoke"]),
    mirrors_groups=st.booleans(),
)

mapped_identities: st.SearchStrategy[MappedIdentity] = st.builds(
    MappedIdentity,
    profile=st.dictionaries(_fields, _values, max_size=3),
    groups=st.none() | _groups.filter(bool),
    grants=st.frozensets(st.builds(RuleGrantIntent, _roles, _rule_sources), max_size=4),
    pending=st.frozensets(st.builds(RuleGrantIntent, _roles, _rule_sources), max_size=2),
    denials=st.just(()),
    email_verified=st.booleans(),
)

denials: st.SearchStrategy[tuple[Denial, ...]] = st.lists(
    st.builds(Denial, st.sampled_from(["d1", "unverified"]), st.just("no")),
    min_size=1, max_size=2).map(tuple)


def _account(status: str, kind: str, profile: dict[str, str], sources: dict[str, str],
             groups: frozenset[str], grants: frozenset[RoleGrant],
             pending: frozenset[PendingGrant]) -> Account:
    return Account(id="acc", tenant="t", status=status, kind=kind,  # type: ignore[arg-type]
                   profile=profile,
                   profile_sources={k: sources.get(k, f"rule:profile.{k}") for k in profile},
                   groups=groups, grants=grants, pending=pending)


accounts: st.SearchStrategy[Account] = st.builds(
    _account,
    status=st.sampled_from(["active", "active", "suspended", "deactivated"]),
    kind=st.sampled_from(["user", "user", "admin", "break_glass"]),
    profile=st.dictionaries(_fields, _values, max_size=3),
    sources=st.dictionaries(_fields, st.sampled_from(["scim", "manual"]), max_size=1),
    groups=_groups,
    grants=st.frozensets(st.builds(RoleGrant, _roles, _any_sources), max_size=5),
    pending=st.frozensets(st.builds(PendingGrant, _roles, _rule_sources), max_size=2),
)


# -- hostile text, for the fuzzers of the HTTP edges ----------------------------------------------

#: Strings an attacker or a broken client sends: lone surrogates (JSON's ``"\ud800"``), NUL and
#: other C0 controls, tab/CR/LF (allowed in free text), escape sequences, right-to-left and
#: zero-width marks, astral characters, strings at and past the size limits, and arbitrary
#: code points, surrogates included. Sent as JSON with ``\u`` escapes, they reach the server
#: as the same Python strings.
hostile_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from([
        "\ud800", "\udfff", "a\udc00b", "\x00", "a\x00b", "\x01", "\x1b[31mred", "\x7f",
        "\x85", "\t", "a\r\nb", "\u202eevil", "\u200b", "\ufeff", "\uffff", "\U0001f600",
        "\U0010ffff", "e\u0301", "", " ", "\"", "'\"\\", "%00", "${x}", "{{x}}", "<a>",
        "x" * 1024, "x" * 1025, "\u00e9" * 1025, "\U0001f600" * 600, "x" * 70_000,
    ]),
    st.text(st.characters(codec=None, categories=None), max_size=40),
    st.text(st.characters(max_codepoint=0x20), max_size=8),
    st.text(max_size=20),
)


# -- configuration files (``jitprov apply``) ------------------------------------------------------

_ROUND_TRIP_MAPPINGS = ("groups: groups\n", "profile:\n  email: email\ngroups: groups\n",
                        "roles:\n  default: [staff]\n  rules:\n    - id: nurses\n"
                        "      grant: [nurse]\n      when: contains(groups, 'Nurses')\n")
_CONFIG_EVENTS = st.lists(st.sampled_from(["account.created", "account.deactivated",
                                           "role.granted", "session.revoked"]),
                          min_size=1, max_size=3, unique=True)
_SAML_MFA = "urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor"


def config_env_name(*parts: str) -> str:
    """The environment variable name ``jitprov export`` writes for a secret."""
    return "CFG_" + "_".join(p.upper().replace("-", "_") for p in parts)


@st.composite
def _config_connection(draw: st.DrawFn, tenant: str, slug: str,
                       idp_cert: str) -> dict[str, object]:
    kind = draw(st.sampled_from(["oidc", "saml", "mock"]))
    conn: dict[str, object] = {"enabled": draw(st.booleans()),
                               "mapping": draw(st.sampled_from(_ROUND_TRIP_MAPPINGS))}
    mfa = draw(st.booleans())
    if kind == "oidc":
        method = draw(st.sampled_from(["client_secret_basic", "client_secret_post",
                                       "private_key_jwt"]))
        settings: dict[str, object] = {
            "issuer": f"https://{slug}.example", "client_id": draw(st.from_regex(
                r"[A-Za-z0-9_-]{1,12}", fullmatch=True)),
            "scopes": ["openid", *draw(st.lists(st.sampled_from(["email", "profile", "groups"]),
                                                unique=True))],
            "token_auth_method": method, "userinfo": draw(st.booleans()),
            "idp_logout": draw(st.booleans()), "clock_skew_seconds": draw(
                st.integers(0, 600)), "require_mfa": mfa,
            "accepted_auth_contexts": draw(st.sampled_from([[], ["mfa"]])) if mfa else [],
            "google_hosted_domains": draw(st.sampled_from([[], ["hospital.example"]]))}
        if method != "private_key_jwt":
            settings["client_secret"] = "${" + config_env_name(tenant, slug,
                                                               "client_secret") + "}"
        conn["oidc"] = settings
    elif kind == "saml":
        conn["saml"] = {
            "idp_entity_id": f"https://{slug}.example/saml", "idp_sso_url":
            f"https://{slug}.example/sso", "idp_certs": [idp_cert],
            "want_authn_requests_signed": draw(st.booleans()),
            "allow_idp_initiated": draw(st.booleans()),
            "require_signed_assertion": draw(st.booleans()),
            "sign_authn_requests": draw(st.booleans()),
            "allow_sha1": draw(st.booleans()), "require_mfa": mfa,
            "accepted_auth_contexts": [_SAML_MFA] if mfa else [],
            "idp_slo_url": draw(st.sampled_from([None, f"https://{slug}.example/slo"]))}
    else:
        conn["mock"] = {}
    return conn


@st.composite
def config_documents(draw: st.DrawFn, idp_cert: str) -> dict[str, object]:
    """A configuration file's content (as parsed YAML) that ``jitprov apply`` accepts, with
    secret references named as ``jitprov export`` names them (one to three tenants,
    connections of every kind, policies, domains, webhooks on loopback)."""
    tenants: dict[str, object] = {}
    for slug in draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
                              min_size=1, max_size=3, unique=True)):
        warn = draw(st.none() | st.integers(1, 400))
        deactivate = draw(st.none() | st.integers(1, 400))
        if warn is not None and deactivate is not None and warn >= deactivate:
            deactivate = warn + 1
        names = draw(st.lists(st.sampled_from(["okta", "entra", "adfs", "demo"]),
                              max_size=3, unique=True))
        connections = {f"{slug}-{n}": draw(_config_connection(slug, f"{slug}-{n}", idp_cert))
                       for n in names}
        tenants[slug] = {
            "name": draw(st.from_regex(r"[A-Z][A-Za-z' ]{0,15}[a-z]", fullmatch=True)),
            "policy": {"dormant_warn_days": warn, "dormant_deactivate_days": deactivate,
                       "delete_after_days": draw(st.none() | st.integers(1, 400)),
                       "audit_retention_days": draw(st.none() | st.integers(30, 3650)),
                       "claims_retention_days": draw(st.integers(0, 90)),
                       "scim_delete": draw(st.sampled_from(["deactivate", "erase"])),
                       "scim_on_existing": draw(st.sampled_from(["conflict", "adopt"]))},
            "frontline": {"idle_seconds": draw(st.integers(1, 3600)),
                          "shifts": draw(st.sampled_from([[], ["07:00", "19:00"]])),
                          "timezone": draw(st.sampled_from(["UTC", "Europe/Lisbon"])),
                          "locale": draw(st.sampled_from(["", "en", "pt", "es"]))},
            "connections": connections,
            "domains": {f"{c}.example": c for c in connections if draw(st.booleans())},
            "webhooks": [{"url": f"http://127.0.0.1:9/{slug}/{i}", "events": draw(_CONFIG_EVENTS),
                          "secret": "${" + config_env_name(slug, "webhook", str(i),
                                                           "secret") + "}"}
                         for i in range(1, draw(st.integers(0, 2)) + 1)],
        }
    return {"version": 1, "tenants": tenants}
