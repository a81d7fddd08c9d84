"""jitprov_client.django with Django's test client: the token makes the user, its roles the
user's prefixed groups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jitprov_stand_in import ACCOUNT, Issuer

pytest.importorskip("django")

import django_site

django_site.configure()  # before Django's models are imported

from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


@pytest.fixture
def site(issuer: Issuer) -> Iterator[Client]:
    """Django's test client on the site, the verifier pointed at the stand-in, each test in a
    transaction rolled back at its end."""
    with override_settings(ROOT_URLCONF="django_site", MIDDLEWARE=django_site.MIDDLEWARE,
                           JITPROV_VERIFIER=issuer.verifier()), transaction.atomic():
        yield Client()
        transaction.set_rollback(True)


def me(client: Client, token: str | None, header: str = "X-Jitprov-Token") -> dict[str, Any]:
    headers = {header: token} if token is not None else {}
    answer = client.get("/me", headers=headers)
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


def test_the_first_request_creates_the_user_with_a_group_per_role(
        site: Client, issuer: Issuer) -> None:
    assert me(site, issuer.token()) == {
        "authenticated": True, "username": ACCOUNT, "email": "ana@hospital.example",
        "name": "Ana Lima", "staff": False, "groups": ["jitprov:nurse", "jitprov:staff"]}
    user = User.objects.get(username=ACCOUNT)
    assert not user.has_usable_password()


def test_role_changes_move_the_user_between_prefixed_groups_only(
        site: Client, issuer: Issuer) -> None:
    me(site, issuer.token())
    user = User.objects.get(username=ACCOUNT)
    user.groups.add(Group.objects.create(name="Night shift"))  # given in Django: not jitprov's
    answer = me(site, issuer.token(roles=["staff", "pharmacist"], email="ana@clinic.example",
                                   name="Ana Lima-Souza"))
    assert answer["groups"] == ["Night shift", "jitprov:pharmacist", "jitprov:staff"]
    assert (answer["email"], answer["name"]) == ("ana@clinic.example", "Ana Lima-Souza")
    assert Group.objects.filter(name="jitprov:nurse").exists()  # left, not deleted
    assert me(site, issuer.token(roles=[]))["groups"] == ["Night shift"]


def test_an_unchanged_identity_writes_nothing(site: Client, issuer: Issuer) -> None:
    me(site, issuer.token())
    with CaptureQueriesContext(connection) as queries:
        me(site, issuer.token())
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []


def test_group_permissions_follow_the_role(site: Client, issuer: Issuer) -> None:
    pharmacists = Group.objects.create(name="jitprov:pharmacist")
    pharmacists.permissions.add(Permission.objects.get(codename="view_group"))
    nurse = {"X-Jitprov-Token": issuer.token()}
    assert site.get("/formulary", headers=nurse).status_code == 403
    pharmacist = {"X-Jitprov-Token": issuer.token(roles=["pharmacist"])}
    assert site.get("/formulary", headers=pharmacist).status_code == 200


def test_a_token_that_does_not_verify_is_anonymous(site: Client, issuer: Issuer) -> None:
    for token in (issuer.token(tenant="clinic"), issuer.token(exp=1), "forged", ""):
        assert me(site, token)["authenticated"] is False
    assert site.get("/rota", headers={"X-Jitprov-Roles": "nurse"}).status_code == 302
    assert site.get("/rota").status_code == 302  # to LOGIN_URL, as login_required does
    assert not User.objects.exists()


def test_no_session_is_made(site: Client, issuer: Issuer) -> None:
    answer = site.get("/rota", headers={"X-Jitprov-Token": issuer.token()})
    assert answer.status_code == 200
    assert "sessionid" not in answer.cookies
    assert site.get("/rota").status_code == 302  # the next request brings its own token


def test_a_user_deactivated_in_django_is_refused(site: Client, issuer: Issuer) -> None:
    me(site, issuer.token())
    User.objects.filter(username=ACCOUNT).update(is_active=False)
    assert me(site, issuer.token())["authenticated"] is False


def test_the_username_may_be_the_email(site: Client, issuer: Issuer) -> None:
    with override_settings(JITPROV_USERNAME="email"):
        assert me(site, issuer.token())["username"] == "ana@hospital.example"
        assert me(site, issuer.token(email=None))["authenticated"] is False


def test_an_existing_superuser_with_the_tokens_email_is_not_signed_in(
        site: Client, issuer: Issuer) -> None:
    """A site's own admin, it-admin@hospital.example, and a jitprov account whose profile
    says the same email: the token signs nobody in and the admin is left as it was."""
    admin = User.objects.create_superuser("it-admin@hospital.example",
                                          "it-admin@hospital.example", "a-local-password")
    token = issuer.token(email="it-admin@hospital.example", name="Mallory",
                         roles=["nurse"])
    with override_settings(JITPROV_USERNAME="email", JITPROV_STAFF_ROLES=["charge-nurse"]):
        assert me(site, token)["authenticated"] is False
        assert site.get("/formulary", headers={"X-Jitprov-Token": token}).status_code == 403
    admin.refresh_from_db()
    assert (admin.is_superuser, admin.is_staff, admin.first_name) == (True, True, "")
    assert admin.check_password("a-local-password")
    assert not admin.groups.exists()


def test_a_django_user_is_signed_in_only_for_the_jitprov_account_it_is_linked_to(
        site: Client, issuer: Issuer) -> None:
    with override_settings(JITPROV_USERNAME="email"):
        assert me(site, issuer.token())["authenticated"] is True  # made, linked to ACCOUNT
        other = issuer.token(sub="5f0e1c2d-0000-4000-8000-000000000002")  # same email
        assert me(site, other)["authenticated"] is False
        assert me(site, issuer.token())["authenticated"] is True
    User.objects.create_user("7d3c9a10-0000-4000-8000-000000000003")  # a local user
    assert me(site, issuer.token(sub="7d3c9a10-0000-4000-8000-000000000003"))[
        "authenticated"] is False  # its username is that account id, but no link


def test_link_user_hands_an_existing_user_to_a_jitprov_account(
        site: Client, issuer: Issuer) -> None:
    from jitprov_client.django.backends import link_user, linked_account

    local = User.objects.create_user("ana@hospital.example", "ana@hospital.example", "pw")
    with override_settings(JITPROV_USERNAME="email"):
        assert me(site, issuer.token())["authenticated"] is False
        link_user(local, ACCOUNT)
        assert (linked_account(local), local.has_usable_password()) == (ACCOUNT, False)
        assert me(site, issuer.token())["username"] == "ana@hospital.example"
        local.set_password("set-again")  # a password breaks the link
        local.save()
        assert me(site, issuer.token())["authenticated"] is False


def test_a_token_header_given_twice_is_anonymous(site: Client, issuer: Issuer) -> None:
    """Django's WSGI server merges a repeated header with a comma."""
    token = issuer.token()
    assert me(site, f"{token},{token}")["authenticated"] is False
    assert not User.objects.exists()


def test_staff_roles_set_and_clear_is_staff(site: Client, issuer: Issuer) -> None:
    assert me(site, issuer.token(roles=["charge-nurse"]))["staff"] is False
    with override_settings(JITPROV_STAFF_ROLES=["charge-nurse"]):
        assert me(site, issuer.token(roles=["charge-nurse"]))["staff"] is True
        assert me(site, issuer.token(roles=["nurse"]))["staff"] is False


def test_the_header_and_the_group_prefix_are_settings(site: Client, issuer: Issuer) -> None:
    with override_settings(JITPROV_TOKEN_HEADER="X-Auth-Token", JITPROV_GROUP_PREFIX="sso-"):
        assert me(site, issuer.token())["authenticated"] is False  # X-Jitprov-Token ignored
        assert me(site, issuer.token(), header="X-Auth-Token")["groups"] == [
            "sso-nurse", "sso-staff"]


def test_the_verifier_is_built_from_the_issuer_and_tenant_settings() -> None:
    from jitprov_client.django.backends import verifier

    with override_settings(JITPROV_ISSUER="https://sso.hospital.example/",
                           JITPROV_TENANT="st-marys"):
        built = verifier()
        assert (built.issuer, built.tenant) == ("https://sso.hospital.example", "st-marys")
        assert verifier() is built  # one per process: it caches jitprov's keys


@pytest.mark.parametrize("wrong", [
    {"JITPROV_ISSUER": ""},
    {"JITPROV_VERIFIER": "https://sso.hospital.example"},
    {"JITPROV_USERNAME": "name"},
    {"JITPROV_GROUP_PREFIX": ""},
    {"JITPROV_STAFF_ROLES": "charge-nurse"},
    {"MIDDLEWARE": ["jitprov_client.django.middleware.JitprovMiddleware"]},
])
def test_a_wrong_configuration_says_what_to_set(site: Client, issuer: Issuer,
                                               wrong: dict[str, Any]) -> None:
    base = {"JITPROV_VERIFIER": None, "JITPROV_ISSUER": "https://sso.hospital.example",
            "JITPROV_TENANT": "st-marys"} if "JITPROV_ISSUER" in wrong else {}
    with override_settings(**{**base, **wrong}), pytest.raises(ImproperlyConfigured):
        site.get("/me", headers={"X-Jitprov-Token": issuer.token()})
