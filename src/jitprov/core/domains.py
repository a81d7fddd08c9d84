"""Email domains as home-realm discovery compares them: one spelling per domain.

A domain is kept and compared in its lowercase ASCII form (IDNA 2008 with the UTS #46
mapping, via the ``idna`` package): ``Bücher.Example`` and ``xn--bcher-kva.example`` are the
same domain, and so are ``Hospital.EXAMPLE`` and ``hospital.example``. Matching is exact: a
subdomain (``lab.hospital.example``) is another domain, verified on its own, because a
subdomain may belong to another organisation than its parent.

Pure: no I/O. Text goes through ``core.text``'s input rule first, so a control character or a
lone surrogate is refused with the same words everywhere.
"""

from __future__ import annotations

import idna

from jitprov.core.errors import InvalidInput
from jitprov.core.text import check_text

#: RFC 5321 section 4.5.3.1: 64 octets of local part, 255 of domain; an address longer than
#: this is refused before any parsing
MAX_EMAIL_CHARS = 320
#: the longest domain name in DNS's text form (RFC 1035 section 2.3.4, without the root dot)
MAX_DOMAIN_CHARS = 253


def normalise_domain(value: str, field: str = "domain") -> str:
    """The lowercase ASCII (IDNA) form of the domain ``value``, or InvalidInput naming
    ``field``. A name needs two labels at least and a top-level label that is not all digits
    (no ``localhost``, no IP address); one trailing dot is dropped."""
    check_text(value, field, multiline=False, max_chars=MAX_DOMAIN_CHARS * 4)
    text = value.strip()
    if text.endswith("."):
        text = text[:-1]
    try:
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidInput(f"{field}: {text[:80]!r} is not a domain name ({exc})") from exc
    labels = ascii_form.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        raise InvalidInput(f"{field}: {text[:80]!r} is not a domain name (give a name such "
                           "as example.org)")
    if len(ascii_form) > MAX_DOMAIN_CHARS:
        raise InvalidInput(f"{field}: the domain is longer than {MAX_DOMAIN_CHARS} characters")
    return ascii_form


def email_domain(email: str, field: str = "email") -> tuple[str, str]:
    """(the address as typed, trimmed; its domain in :func:`normalise_domain`'s form) of an
    email address, or InvalidInput naming ``field``: no ``@``, an empty local part, a
    control character, more than :data:`MAX_EMAIL_CHARS` characters. The local part is not
    interpreted (each IdP has its own rules); the domain is what follows the last ``@``."""
    check_text(email, field, multiline=False, max_chars=MAX_EMAIL_CHARS)
    address = email.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidInput(f"{field}: enter an email address, such as ana@example.org")
    if any(char.isspace() for char in address):
        raise InvalidInput(f"{field}: an email address has no spaces")
    return address, normalise_domain(domain, field)
