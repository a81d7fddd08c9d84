"""A Django site behind jitprov for the tests: settings (configured once per process), its
URLconf and views. The settings the integration reads (``JITPROV_*``, ``MIDDLEWARE``) are set
per test with ``override_settings``."""

from __future__ import annotations

import django
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, JsonResponse
from django.urls import path

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "jitprov_client.django.middleware.JitprovMiddleware",
]


def configure() -> None:
    """Configure Django (unless something else did) and create its tables in memory."""
    from django.core.management import call_command

    if not settings.configured:
        settings.configure(
            SECRET_KEY="django-test-key-not-a-secret",
            ALLOWED_HOSTS=["testserver"], USE_TZ=True, ROOT_URLCONF=__name__,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                            "django.contrib.sessions"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            MIDDLEWARE=MIDDLEWARE,
            AUTHENTICATION_BACKENDS=["jitprov_client.django.backends.JitprovBackend"],
            LOGIN_URL="/sign-in")
        django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse({
        "authenticated": user.is_authenticated, "username": user.get_username(),
        "email": getattr(user, "email", ""),
        "name": user.get_full_name() if user.is_authenticated else "",
        "staff": user.is_staff,
        "groups": sorted(g.name for g in user.groups.all()) if user.is_authenticated else []})


@login_required  # type: ignore[untyped-decorator]  # Django ships no types
def rota(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"rota": ["07:00-19:00"]})


@permission_required("auth.view_group", raise_exception=True)  # type: ignore[untyped-decorator]
def formulary(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": ["amoxicillin 500 mg"]})


urlpatterns = [path("me", whoami), path("rota", rota), path("formulary", formulary)]
