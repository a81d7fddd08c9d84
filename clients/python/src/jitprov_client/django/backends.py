"""The authentication backend: a verified jitprov identity token is a Django user, created or
updated from the token, its jitprov roles kept in step with Django groups.

A Django user belongs to one jitprov account, and only the users jitprov made (or that were
handed over with :func:`link_user`) are ever signed in from a token. The link is kept in the
user's password, which is unusable anyway: Django's unusable-password prefix ``!`` followed by
``jitprov:<account id>:`` and random characters. A user whose username matches a token but
holds no link for that account (a local account, a ``createsuperuser`` admin, the user of
another jitprov account with the same email) is refused; setting a password breaks the link.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest
from django.utils.crypto import get_random_string

from jitprov_client.verify import Identity, IdentityVerifier, InvalidIdentity

log = logging.getLogger(__name__)

#: Django's ``Group.name`` and ``User.first_name`` length limits
GROUP_NAME_MAX = 150
FIRST_NAME_MAX = 150
#: the start of the (unusable) password of a user linked to a jitprov account
LINK_PREFIX = "!jitprov:"
#: Django's ``password`` field length
PASSWORD_MAX = 128


def _link_password(sub: str) -> str | None:
    """The unusable password that links a user to the jitprov account ``sub``; None when
    the account id is too long for the field."""
    password = f"{LINK_PREFIX}{sub}:{get_random_string(20)}"
    return password if len(password) <= PASSWORD_MAX else None


def linked_account(user: Any) -> str | None:
    """The jitprov account id ``user`` is linked to, or None."""
    password = getattr(user, "password", None) or ""
    if not password.startswith(LINK_PREFIX):
        return None
    return password[len(LINK_PREFIX):].rpartition(":")[0] or None


def link_user(user: Any, sub: str) -> None:
    """Hand the existing Django ``user`` to the jitprov account ``sub`` (``Identity.sub``):
    its password becomes unusable, and tokens of that account sign it in from then on. For a
    site's own accounts that are to be signed in through jitprov, one by one."""
    password = _link_password(sub)
    if password is None:
        raise ValueError("this jitprov account id is too long for Django's password field")
    user.password = password
    user.save(update_fields=["password"])


def verifier() -> IdentityVerifier:
    """``JITPROV_VERIFIER`` when set, else one verifier per ``JITPROV_ISSUER`` and
    ``JITPROV_TENANT`` for the process (it caches jitprov's keys). Raises
    ImproperlyConfigured without them."""
    configured = getattr(settings, "JITPROV_VERIFIER", None)
    if configured is not None:
        if not isinstance(configured, IdentityVerifier):
            raise ImproperlyConfigured("JITPROV_VERIFIER must be a jitprov_client.IdentityVerifier")
        return configured
    issuer = getattr(settings, "JITPROV_ISSUER", "")
    tenant = getattr(settings, "JITPROV_TENANT", "")
    if not issuer or not tenant:
        raise ImproperlyConfigured("set JITPROV_ISSUER (jitprov's base URL) and JITPROV_TENANT "
                                   "(the tenant whose users this site admits)")
    return _verifier_for(str(issuer), str(tenant))


@functools.cache
def _verifier_for(issuer: str, tenant: str) -> IdentityVerifier:
    return IdentityVerifier(issuer, tenant=tenant)


def _group_prefix() -> str:
    prefix = getattr(settings, "JITPROV_GROUP_PREFIX", "jitprov:")
    if not isinstance(prefix, str) or not prefix:
        raise ImproperlyConfigured("JITPROV_GROUP_PREFIX must be a non-empty string: it marks "
                                   "the Django groups jitprov's roles manage")
    return prefix


def _staff_roles() -> tuple[str, ...]:
    roles = getattr(settings, "JITPROV_STAFF_ROLES", ())
    if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
        raise ImproperlyConfigured("JITPROV_STAFF_ROLES must be a list of role names")
    return tuple(roles)


def _username(identity: Identity, model: Any) -> str | None:
    source = getattr(settings, "JITPROV_USERNAME", "sub")
    if source not in ("sub", "email"):
        raise ImproperlyConfigured(f"JITPROV_USERNAME must be 'sub' or 'email', not {source!r}")
    username = identity.sub if source == "sub" else identity.email
    if not username:
        log.warning("jitprov identity %s has no email to use as the username", identity.sub)
        return None
    limit = model._meta.get_field(model.USERNAME_FIELD).max_length
    if limit is not None and len(username) > limit:
        log.warning("jitprov identity %s: its %s is longer than the username field (%d)",
                    identity.sub, source, limit)
        return None
    return username


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def sync_user(identity: Identity) -> Any:
    """The Django user of ``identity``: found by username and linked to its jitprov account,
    created on first sight (with the unusable password that links it), its email, name, staff
    flag and prefixed groups brought in line with the token; writes only what changed, in one
    transaction. None when the identity has no usable username, or its username belongs to
    a user not linked to this account (nothing of that user is changed)."""
    model = get_user_model()
    username = _username(identity, model)
    link = _link_password(identity.sub)
    if username is None or link is None:
        return None
    prefix, staff_roles = _group_prefix(), _staff_roles()
    wanted: dict[str, Any] = {field: value for field, value in (
        ("email", identity.email or ""), ("first_name", (identity.name or "")[:FIRST_NAME_MAX]),
    ) if _has_field(model, field)}
    if staff_roles and _has_field(model, "is_staff"):
        wanted["is_staff"] = identity.has_role(*staff_roles)
    with transaction.atomic():
        user, created = model._default_manager.get_or_create(
            **{model.USERNAME_FIELD: username}, defaults={**wanted, "password": link})
        if not created and linked_account(user) != identity.sub:
            log.warning("jitprov identity %s: the Django user %r is not linked to this "
                        "jitprov account; refused (see jitprov_client.django.backends."
                        "link_user)", identity.sub, username)
            return None
        changed = [field for field, value in wanted.items() if getattr(user, field) != value]
        if changed and not created:
            for field in changed:
                setattr(user, field, wanted[field])
            user.save(update_fields=changed)
        if hasattr(user, "groups"):
            _sync_groups(user, identity, prefix)
    return user


def _sync_groups(user: Any, identity: Identity, prefix: str) -> None:
    """Joins the groups ``prefix + role`` of the identity's roles, leaves the other groups
    with ``prefix``; groups without it are never touched. (Compared in Python: SQLite's LIKE
    ignores case.)"""
    wanted = set()
    for role in identity.roles:
        if len(prefix + role) > GROUP_NAME_MAX:
            log.warning("jitprov role %r is too long for a Django group name", role)
            continue
        wanted.add(prefix + role)
    held = {group.name: group for group in user.groups.all() if group.name.startswith(prefix)}
    joining = sorted(wanted - held.keys())
    if joining:
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in joining))
    leaving = [held[name] for name in held.keys() - wanted]
    if leaving:
        user.groups.remove(*leaving)


class JitprovBackend(ModelBackend):
    """``authenticate(request, jitprov_token=...)``: the user of a token that verifies
    (:func:`verifier`), None otherwise. Permissions are Django's (``ModelBackend``): those of
    the user and of its groups, so a permission given to the group ``jitprov:nurse`` is held
    by whoever holds the role ``nurse``. Never checks passwords."""

    def authenticate(self, request: HttpRequest | None,
                     jitprov_token: str | None = None) -> Any:
        if jitprov_token is None:
            return None
        try:
            identity = verifier().verify(jitprov_token)
        except InvalidIdentity as exc:
            log.info("jitprov identity token refused: %s", exc)
            return None
        user = sync_user(identity)
        if user is None or not self.user_can_authenticate(user):
            return None
        return user
