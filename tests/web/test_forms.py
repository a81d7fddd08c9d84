"""The ACS's form reader against ``urllib.parse.parse_qs``, which it stands in for."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitprov.web.forms import form_fields

NAMES = frozenset({"SAMLResponse", "RelayState", "jitprov_bounce"})


def as_parse_qs_reads(text: str, max_fields: int) -> dict[str, str] | type[ValueError]:
    try:
        fields = parse_qs(text, max_num_fields=max_fields)
    except ValueError:
        return ValueError
    return {name: values[0] for name, values in fields.items() if name in NAMES and values}


def reads(text: str, max_fields: int) -> dict[str, str] | type[ValueError]:
    try:
        return form_fields(text, NAMES, max_fields=max_fields)
    except ValueError:
        return ValueError


#: what forms are made of, the three names, and every kind of escape (base64's, lower-case,
#: other, broken, non-ASCII)
PIECES = st.sampled_from(["SAMLResponse", "RelayState", "jitprov_bounce", "=", "&", "%2B",
                          "%2F", "%3D", "%2b", "%2f", "%3d", "%20", "%C3%A9", "%E9", "%", "%2",
                          "%ZZ", "+", "/", "a", "Z", "0", "=", ";", " ", "\u00e9"])


@given(st.lists(PIECES, max_size=40).map("".join), st.integers(min_value=1, max_value=12))
def test_it_reads_any_form_as_parse_qs_does(text: str, max_fields: int) -> None:
    assert reads(text, max_fields) == as_parse_qs_reads(text, max_fields)


NAME = st.sampled_from(["SAMLResponse", "RelayState", "jitprov_bounce", "Relay%53tate",
                        "SAML+Response", "other", ""])
VALUE = st.lists(PIECES.filter(lambda piece: piece not in ("&", "=")), max_size=8).map("".join)
PAIR = st.tuples(NAME, VALUE).map("=".join)
FIELD = st.one_of(PAIR, PAIR, PAIR, NAME, VALUE)  # mostly name=value


@given(st.lists(FIELD, max_size=10).map("&".join))
def test_it_reads_any_list_of_fields_as_parse_qs_does(text: str) -> None:
    """Repeated names (the first non-empty value wins), empty values, fields without ``=``,
    escaped names: as parse_qs."""
    assert reads(text, 12) == as_parse_qs_reads(text, 12)


@given(st.text(max_size=60), st.integers(min_value=1, max_value=12))
def test_it_reads_any_text_as_parse_qs_does(text: str, max_fields: int) -> None:
    assert reads(text, max_fields) == as_parse_qs_reads(text, max_fields)


@given(st.binary(max_size=3000), st.text(max_size=30))
def test_a_base64_value_comes_back_as_it_was_encoded(data: bytes, relay_state: str) -> None:
    response = base64.b64encode(data).decode()
    text = urlencode({"SAMLResponse": response, "RelayState": relay_state})
    expected = {k: v for k, v in (("SAMLResponse", response), ("RelayState", relay_state)) if v}
    assert form_fields(text, NAMES, max_fields=8) == expected


def test_more_fields_than_allowed_are_refused_as_parse_qs_refuses_them() -> None:
    with pytest.raises(ValueError, match="Max number of fields"):
        form_fields("&".join(["a=1"] * 9), NAMES, max_fields=8)
