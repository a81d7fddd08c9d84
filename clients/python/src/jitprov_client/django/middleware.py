"""The middleware: the request's user from the jitprov identity token the proxy passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from jitprov_client.verify import HEADER, single_token


class JitprovMiddleware:
    """After ``AuthenticationMiddleware``: a request with the token header
    (``JITPROV_TOKEN_HEADER``, ``X-Jitprov-Token``) gets the user the backends authenticate
    from it (``JitprovBackend``), or AnonymousUser when it does not verify or was given twice
    (merged with a comma); a request without it keeps the user ``AuthenticationMiddleware``
    found. No session is made."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not hasattr(request, "user"):
            raise ImproperlyConfigured(
                "jitprov_client.django.middleware.JitprovMiddleware needs "
                "django.contrib.auth.middleware.AuthenticationMiddleware before it")
        token = request.headers.get(getattr(settings, "JITPROV_TOKEN_HEADER", HEADER))
        if token is not None:
            token = single_token([token]) or ""  # merged duplicates: anonymous
            user: Any = auth.authenticate(request, jitprov_token=token) or AnonymousUser()
            request.user = user

            async def auser() -> Any:
                return user

            request.auser = auser
        return self.get_response(request)
