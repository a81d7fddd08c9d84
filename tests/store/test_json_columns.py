"""JSON columns are written by ``dump_json``: orjson's text where it holds what
``json.dumps``'s would, ``json.dumps``'s own where the two could differ."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from jitprov.store.database import Database, dump_json
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock


class Tag(str):
    """A str subclass: json.dumps writes it as a string, orjson would call its default."""


class Fraction(float):
    """A float subclass: json.dumps writes it as a float, orjson refuses it."""


class Level(enum.IntEnum):
    HIGH = 2


class Score(float, enum.Enum):
    UNKNOWN = float("nan")


@dataclasses.dataclass
class Point:
    x: int


#: what a JSON column may be handed: JSON values and the things on the edge of both encoders
_leaves = (st.none() | st.booleans()
           | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits too
           | st.floats()  # NaN and the infinities too
           | st.text(max_size=12)  # lone surrogates too
           | st.text(max_size=6).map(Tag) | st.sampled_from([Level.HIGH, Score.UNKNOWN])
           | st.floats().map(Fraction))
_keys = st.text(max_size=8) | st.integers(-5, 5) | st.booleans() | st.none() | st.floats()
_values = st.recursive(
    _leaves,
    lambda children: (st.lists(children, max_size=4) | st.tuples(children, children)
                      | st.dictionaries(_keys, children, max_size=4)),
    max_leaves=16)


def _same(a: Any, b: Any) -> bool:
    """Equal JSON values, a NaN equal to a NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(_values)
def test_a_json_column_reads_back_what_json_dumps_wrote(value: object) -> None:
    try:
        expected = json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            dump_json(value)
        return
    written = dump_json(value)
    assert _same(json.loads(written), json.loads(expected)), (written, expected)


@pytest.mark.parametrize("value", [
    float("nan"), [1.5, float("inf")], {"a": [None, float("-inf")]}, {"a": None, "b": (1e400,)},
    2**64, {1: "x"}, {"k": Tag("v")}, {"when": datetime(2026, 1, 2, tzinfo=UTC)},
    Point(1), "\ud800", {"s": Score.UNKNOWN}, {"name": "Zoë", "manager": None}])
def test_where_the_encoders_could_differ_json_dumps_writes(value: object) -> None:
    """NaN and the infinities (orjson: null; a float Enum's NaN too), what orjson refuses or
    would write where json.dumps refuses, text that is not ASCII: json.dumps's own text
    (escaped: a column's text stays ASCII), or its own error."""
    try:
        expected = json.dumps(value)
    except TypeError:
        with pytest.raises(TypeError):
            dump_json(value)
        return
    assert dump_json(value) == expected


def test_an_enum_or_a_uuid_json_dumps_refuses_is_written_as_its_value() -> None:
    """The one way the two differ that ``dump_json`` does not decline: orjson writes these
    natively where json.dumps raises (a column handed one was a 500 before)."""
    class Colour(enum.Enum):
        RED = "red"

    some = uuid.UUID(int=7)
    for value in (Colour.RED, some):
        with pytest.raises(TypeError):
            json.dumps(value)
    assert dump_json({"c": Colour.RED, "u": some}) == f'{{"c":"red","u":"{some}"}}'
    assert dump_json(Level.HIGH) == "2" and json.dumps(Level.HIGH) == "2"


def test_orjson_writes_the_common_case_compactly() -> None:
    """The fast path is taken: its compact, unescaped text (json.dumps spaces and escapes)."""
    value = {"name": "Zoe", "groups": ["Nurses", "Ward 3"], "n": 3, "ok": True,
             "manager": None, "level": 2.5}
    assert dump_json(value) == ('{"name":"Zoe","groups":["Nurses","Ward 3"],"n":3,"ok":true,'
                                '"manager":null,"level":2.5}')
    assert json.loads(dump_json(value)) == value


def test_a_json_column_reads_back_as_written(db: Database, clock: Clock, tenant: TenantRecord,
                                             connection: ConnectionRecord) -> None:
    """Through the engine: an identity's claims are stored as ``dump_json`` writes them
    (the engine's serializer; orjson's compact text for ASCII, json.dumps's escapes for
    the rest) and read back the same, on both databases."""
    from .test_fast import new_account

    with UnitOfWork(db) as uow:
        account_id = new_account(uow, tenant, connection, clock)
        uow.commit()

    def recorded(claims: dict[str, object]) -> tuple[str, object]:
        """The claims recorded at a login: their stored text, and as read back."""
        with UnitOfWork(db) as uow:
            uow.identities.record_login(account_id=account_id, connection_id=connection.id,
                                        subject="s-1", now=clock(), claims=claims)
            uow.commit()
        with db.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT CAST(claims AS TEXT) FROM identity "
                                          "WHERE subject = 's-1'")).scalar_one()
        with UnitOfWork(db, readonly=True) as uow:
            found = uow.identities.claims.get(connection.id, "s-1")
        assert found is not None
        return stored, found.claims

    claims = {"name": "Zoe Angstrom", "groups": ["Ward 3", "Nurses"], "level": 2.5,
              "nested": {"a": [1, 2, {"b": None}]}}
    stored, read = recorded(claims)
    assert stored == dump_json(claims) and '"name":"Zoe Angstrom"' in stored
    assert read == claims
    accented = {"name": "Zoë Ångström"}
    stored, read = recorded(accented)
    assert stored == json.dumps(accented) and stored.isascii()
    assert read == accented
