"""The one spelling of an email domain: lowercase ASCII (IDNA), exact, bounded."""

from __future__ import annotations

import pytest

from jitprov.core.domains import email_domain, normalise_domain
from jitprov.core.errors import InvalidInput


@pytest.mark.parametrize(("typed", "stored"), [
    ("hospital.example", "hospital.example"),
    ("Hospital.EXAMPLE", "hospital.example"),
    (" hospital.example. ", "hospital.example"),
    ("Bücher.Example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("lab.hospital.example", "lab.hospital.example"),
])
def test_a_domain_has_one_spelling(typed: str, stored: str) -> None:
    assert normalise_domain(typed) == stored


@pytest.mark.parametrize("typed", ["", "localhost", "10.0.0.1", "a..example", "-a.example",
                                   "exa_mple.org", "xn--zz.example", "a b.example",
                                   "a" * 64 + ".example", ("a" * 60 + ".") * 5 + "example",
                                   "hospital.example\x00", "[127.0.0.1]"])
def test_what_is_not_a_domain_name_is_refused(typed: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_domain(typed)


def test_the_email_keeps_its_local_part_and_the_domain_after_the_last_at() -> None:
    assert email_domain(' "a@b"@Hospital.Example ') == ('"a@b"@Hospital.Example',
                                                          "hospital.example")


@pytest.mark.parametrize("typed", ["ana", "ana@", "@hospital.example", "ana @x.example",
                                   "ana\x0b@x.example",
                                   "a" * 321 + "@x.example"])
def test_what_is_not_an_address_is_refused(typed: str) -> None:
    with pytest.raises(InvalidInput):
        email_domain(typed)
