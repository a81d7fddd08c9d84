"""A Django site behind a real jitprov: the token forward-auth hands the proxy signs the
person into Django (jitprov_client.django), and a role granted in jitprov becomes a Django
group at the next request. The site is the one of the client's own tests
(clients/python/tests/django_site.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from jitprov.services import accounts
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from jitprov_client import IdentityVerifier
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in

SITE = Path(__file__).parents[2] / "clients" / "python" / "tests" / "django_site.py"


def django_site() -> ModuleType:
    """The test site's module, under the name its URLconf setting uses."""
    if "django_site" not in sys.modules:
        spec = importlib.util.spec_from_file_location("django_site", SITE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["django_site"] = module
        spec.loader.exec_module(module)
    return sys.modules["django_site"]


@pytest.fixture
def sso(ctx: ServiceContext, clock: Clock) -> Iterator[TestClient]:
    clock.now = datetime.now(UTC)  # Django verifies tokens against the real clock
    setup_connection(ctx)
    with make_client(ctx) as client:
        sign_in(client)
        yield client


def test_forward_auth_signs_the_person_into_django_with_their_roles_as_groups(
        sso: TestClient, ctx: ServiceContext) -> None:
    site = django_site()
    site.configure()
    from django.db import transaction
    from django.test import Client, override_settings

    def forward_auth_token() -> str:  # what the proxy asks jitprov at each request
        answer = sso.get("/auth/verify")
        assert answer.status_code == 200
        return answer.headers["x-jitprov-token"]

    # the JWKS from jitprov in-process (starlette's TestClient is an httpx-like client)
    verifier = IdentityVerifier("http://testserver", tenant="hospital",
                                http=sso)  # type: ignore[arg-type]
    with override_settings(ROOT_URLCONF="django_site", MIDDLEWARE=site.MIDDLEWARE,
                           JITPROV_VERIFIER=verifier), transaction.atomic():
        django = Client()
        me = sso.get("/me").json()
        who = django.get("/me", headers={"X-Jitprov-Token": forward_auth_token()}).json()
        assert who == {"authenticated": True, "username": me["id"],
                       "email": "ana@hospital.example", "name": "Ana Lima", "staff": False,
                       "groups": ["jitprov:nurse", "jitprov:staff"]}
        accounts.grant_role(ctx, "hospital", me["id"], "pharmacist", reason="cover",
                            actor="test")
        who = django.get("/me", headers={"X-Jitprov-Token": forward_auth_token()}).json()
        assert who["groups"] == ["jitprov:nurse", "jitprov:pharmacist", "jitprov:staff"]
        assert django.get("/me", headers={"X-Jitprov-Roles": "pharmacist"}).json()[
            "authenticated"] is False
        transaction.set_rollback(True)


def test_the_readme_configures_django_as_the_tested_site_does() -> None:
    """The settings block of README "Apps: the client package" is the tested site's."""
    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    section = readme[readme.index("## Apps: the client package"):]
    block = section[section.index("```python\n") + len("```python\n"):]
    block = block[:block.index("```")]
    configured: dict[str, object] = {}
    exec(block, configured)  # noqa: S102 - our own README's settings block
    site = django_site()
    site.configure()
    from django.conf import settings

    assert configured["MIDDLEWARE"] == site.MIDDLEWARE
    assert configured["AUTHENTICATION_BACKENDS"] == settings.AUTHENTICATION_BACKENDS
    assert {"JITPROV_ISSUER", "JITPROV_TENANT"} <= configured.keys()
