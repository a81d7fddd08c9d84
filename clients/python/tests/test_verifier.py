"""IdentityVerifier: what a token must be to be believed, and how jitprov's keys are fetched."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from jitprov_client import Identity, IdentityVerifier, InvalidIdentity
from jitprov_stand_in import ACCOUNT, ISSUER, TENANT, Issuer


def test_a_token_of_the_issuer_and_tenant_gives_its_identity(issuer: Issuer) -> None:
    identity = issuer.verifier().verify(issuer.token())
    assert identity == Identity(sub=ACCOUNT, tenant=TENANT, email="ana@hospital.example",
                                name="Ana Lima", roles=frozenset({"nurse", "staff"}),
                                groups=frozenset({"Nurses"}))
    assert identity.has_role("pharmacist", "nurse")
    assert not identity.has_role("pharmacist")


def test_a_trailing_slash_on_the_issuer_is_the_same_issuer(issuer: Issuer) -> None:
    verifier = issuer.verifier()
    verifier = IdentityVerifier(ISSUER + "/", tenant=TENANT, http=verifier.http)
    assert verifier.verify(issuer.token()).sub == ACCOUNT


@pytest.mark.parametrize(("claims", "why"), [
    ({"exp": int(time.time()) - 31}, "expired past the 30 s leeway"),
    ({"iss": "https://evil.example"}, "another issuer"),
    ({"aud": "another-app"}, "another audience"),
    ({"tenant": "clinic"}, "another tenant of the same jitprov"),
    ({"tenant": None}, "no tenant"),
    ({"sub": None}, "no subject"),
    ({"exp": None}, "no expiry"),
])
def test_a_token_with_a_wrong_claim_is_refused(issuer: Issuer, claims: dict[str, Any],
                                               why: str) -> None:
    with pytest.raises(InvalidIdentity):
        issuer.verifier().verify(issuer.token(**claims))


def test_within_the_leeway_an_expired_token_still_verifies(issuer: Issuer) -> None:
    assert issuer.verifier().verify(issuer.token(exp=int(time.time()) - 10)).sub == ACCOUNT


def test_a_tampered_or_foreign_signature_is_refused(issuer: Issuer) -> None:
    verifier = issuer.verifier()
    head, body, sig = issuer.token().split(".")
    with pytest.raises(InvalidIdentity):
        verifier.verify(f"{head}.{body}.{sig[::-1]}")
    stranger = Issuer.new_key("k1")  # the published key id, another key
    with pytest.raises(InvalidIdentity):
        verifier.verify(issuer.token(key=stranger))
    hmac = OctKey.generate_key(256, parameters={"kid": "k1"})
    forged = jwt.encode({"alg": "HS256", "kid": "k1"}, {"iss": ISSUER, "sub": "x"}, hmac,
                        algorithms=["HS256"])
    with pytest.raises(InvalidIdentity):
        verifier.verify(forged)
    for nothing in (None, "", "not-a-jwt"):
        with pytest.raises(InvalidIdentity):
            verifier.verify(nothing)


def test_keys_are_fetched_once_and_again_for_a_new_key_id(issuer: Issuer) -> None:
    verifier = issuer.verifier(refresh_interval=0)
    for _ in range(5):
        verifier.verify(issuer.token())
    assert issuer.fetches == 1
    issuer.keys.append(Issuer.new_key("k2"))  # jitprov rotated: the new key is published
    assert verifier.verify(issuer.token(key=issuer.keys[1])).sub == ACCOUNT
    assert issuer.fetches == 2


def test_unknown_key_ids_refetch_at_most_once_per_interval(issuer: Issuer) -> None:
    verifier = issuer.verifier(refresh_interval=60)
    verifier.verify(issuer.token())
    unknown = Issuer.new_key("never-published")
    for _ in range(50):
        with pytest.raises(InvalidIdentity):
            verifier.verify(issuer.token(key=unknown))
    assert issuer.fetches == 1  # the first fetch was less than the interval ago


def test_a_jwks_that_cannot_be_read_refuses_and_is_not_asked_again_at_once(
        issuer: Issuer) -> None:
    issuer.down = True
    verifier = issuer.verifier()
    for _ in range(20):
        with pytest.raises(InvalidIdentity, match="keys"):
            verifier.verify(issuer.token())
    assert issuer.fetches == 1
    issuer.down = False
    assert issuer.verifier().verify(issuer.token()).sub == ACCOUNT


def test_by_default_an_unknown_key_id_refetches_after_30_seconds(
        issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    verifier = issuer.verifier()
    verifier.verify(issuer.token())
    unknown = Issuer.new_key("k2")
    issuer.keys.append(unknown)  # published after the verifier cached the keys
    clock[0] += 29
    with pytest.raises(InvalidIdentity):
        verifier.verify(issuer.token(key=unknown))
    assert issuer.fetches == 1
    clock[0] += 2
    assert verifier.verify(issuer.token(key=unknown)).sub == ACCOUNT
    assert issuer.fetches == 2


def test_a_key_removed_from_the_jwks_is_refused_once_the_key_set_is_max_age_old(
        issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """jitprov stopped publishing k1 (retired, or removed after a leak) and signs with k2:
    a token signed with k1 is refused from the next fetch on, at most max_age later."""
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    verifier = issuer.verifier()  # max_age: 600 s by default
    leaked = issuer.token()
    verifier.verify(leaked)
    issuer.keys = [Issuer.new_key("k2")]
    clock[0] += 599
    assert verifier.verify(leaked).sub == ACCOUNT  # the cached set is not yet max_age old
    assert issuer.fetches == 1
    clock[0] += 1
    with pytest.raises(InvalidIdentity):
        verifier.verify(leaked)
    assert issuer.fetches == 2
    assert verifier.verify(issuer.token(key=issuer.keys[0])).sub == ACCOUNT
    assert issuer.fetches == 2


def test_while_the_jwks_is_down_the_last_key_set_serves_up_to_the_stale_limit(
        issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    verifier = issuer.verifier(max_age=60, stale_limit=300, refresh_interval=30)
    verifier.verify(issuer.token())
    issuer.down = True
    clock[0] += 61
    assert verifier.verify(issuer.token()).sub == ACCOUNT  # fetch failed: the last set
    assert issuer.fetches == 2
    for _ in range(10):
        verifier.verify(issuer.token())
    assert issuer.fetches == 2  # failed fetches count against the interval
    clock[0] += 238  # 299 s after the last good fetch
    assert verifier.verify(issuer.token()).sub == ACCOUNT
    clock[0] += 1
    with pytest.raises(InvalidIdentity, match="keys"):
        verifier.verify(issuer.token())
    issuer.down = False
    clock[0] += 30
    assert verifier.verify(issuer.token()).sub == ACCOUNT


def test_by_default_keys_are_reread_after_10_minutes_and_kept_an_hour_while_unreadable(
        issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    verifier = issuer.verifier()
    verifier.verify(issuer.token())
    issuer.down = True
    clock[0] += 600
    verifier.verify(issuer.token())
    assert issuer.fetches == 2
    clock[0] += 2999  # 3599 s after the last good fetch
    assert verifier.verify(issuer.token()).sub == ACCOUNT
    clock[0] += 1
    with pytest.raises(InvalidIdentity, match="keys"):
        verifier.verify(issuer.token())
