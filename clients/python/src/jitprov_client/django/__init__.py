"""Django behind jitprov: the verified identity token signs the request's user in.

Install ``jitprov-client[django]`` and, in the settings::

    AUTHENTICATION_BACKENDS = ["jitprov_client.django.backends.JitprovBackend"]
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "jitprov_client.django.middleware.JitprovMiddleware", ...]
    JITPROV_ISSUER = "https://sso.hospital.example"   # jitprov's JITPROV_BASE_URL
    JITPROV_TENANT = "st-marys"

Optional settings:

``JITPROV_TOKEN_HEADER`` (``"X-Jitprov-Token"``)
    the header the proxy passes the token in (jitprov's ``JITPROV_FORWARD_AUTH_HEADER_PREFIX``
    followed by ``Token``).
``JITPROV_USERNAME`` (``"sub"``)
    what becomes the Django username: ``"sub"`` (the jitprov account id, which never changes)
    or ``"email"`` (a changed email makes a new Django user).
``JITPROV_GROUP_PREFIX`` (``"jitprov:"``)
    each jitprov role is a Django group named prefix + role. Only groups with this prefix are
    managed: a user joins the groups of the roles they hold and leaves the prefixed groups of
    roles they lost; groups without the prefix are never touched. Give the groups their
    permissions in Django.
``JITPROV_STAFF_ROLES`` (none)
    roles that make ``is_staff`` true (the Django admin); when set, ``is_staff`` follows them at
    every request, when empty it is left alone.
``JITPROV_VERIFIER``
    an :class:`~jitprov_client.IdentityVerifier` to use instead of one built from the issuer
    and tenant (your own HTTP client, timeouts or audience).

The user is looked up by username, created on first sight (with an unusable password that
links it to the jitprov account), and signed in only while that link holds: a user of the
same username that jitprov did not make for this account (a local account, a superuser, the
user of another jitprov account with the same email) is refused and left untouched, unless
handed over with ``backends.link_user(user, sub)``. Its email, name (``first_name``, which
``get_full_name()`` returns; ``last_name`` left empty), staff flag and groups are updated
when the token says otherwise; nothing is written when nothing changed. No Django session
is made: the proxy passes the token with every request. A request whose token does not
verify (or whose token header came twice) is anonymous; one with no token keeps whatever
user ``AuthenticationMiddleware`` found.
"""

from __future__ import annotations

try:
    import django  # noqa: F401  (the submodules import Django's models: only once it is set up)
except ImportError as exc:
    raise ImportError("jitprov_client.django needs Django: "
                      "pip install 'jitprov-client[django]'") from exc
