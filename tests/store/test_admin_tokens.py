"""AdminTokenRepository: tokens stored as hashes; only unrevoked, unexpired ones are active."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from jitprov.core.errors import NotFound
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

HASH = hashlib.sha256(b"jp_admin_example").hexdigest()
OTHER_HASH = hashlib.sha256(b"jp_admin_other").hexdigest()


def create(db: Database, clock: Clock, name: str = "ci", token_hash: str = HASH,
           lifetime: timedelta | None = None) -> int:
    with UnitOfWork(db) as uow:
        token_id = uow.config.admin_tokens.create(name, token_hash, clock(),
                                                  None if lifetime is None else clock() + lifetime)
        uow.commit()
    return token_id


def find_active(db: Database, clock: Clock, token_hash: str = HASH) -> tuple[int, str] | None:
    with UnitOfWork(db, readonly=True) as uow:
        return uow.config.admin_tokens.find_active(token_hash, clock())


def test_find_active_returns_id_and_name_of_the_token_with_this_hash(
        db: Database, clock: Clock) -> None:
    token_id = create(db, clock, "ci")
    create(db, clock, "ops", OTHER_HASH)

    assert (token_id, "ci") == find_active(db, clock)


def test_find_active_of_an_unknown_hash_returns_none(db: Database, clock: Clock) -> None:
    create(db, clock)

    assert find_active(db, clock, OTHER_HASH) is None


def test_a_token_is_active_until_it_expires(db: Database, clock: Clock) -> None:
    token_id = create(db, clock, lifetime=timedelta(days=90))
    clock.advance(days=89, hours=23)
    before = find_active(db, clock)
    clock.advance(hours=1)

    assert ((token_id, "ci"), None) == (before, find_active(db, clock))


def test_a_revoked_token_is_not_active(db: Database, clock: Clock) -> None:
    token_id = create(db, clock)

    with UnitOfWork(db) as uow:
        uow.config.admin_tokens.revoke(token_id, clock())
        uow.commit()

    assert find_active(db, clock) is None


def test_list_returns_every_token_with_its_dates(db: Database, clock: Clock) -> None:
    created = clock.now
    ci = create(db, clock, "ci", lifetime=timedelta(days=30))
    clock.advance(hours=1)
    ops = create(db, clock, "ops", OTHER_HASH)
    with UnitOfWork(db) as uow:
        uow.config.admin_tokens.revoke(ci, clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        listed = uow.config.admin_tokens.list()

    assert [(ci, "ci", created, created + timedelta(days=30), clock.now),
            (ops, "ops", clock.now, None, None)] == listed


def test_revoking_an_unknown_or_already_revoked_token_raises_not_found(
        db: Database, clock: Clock) -> None:
    token_id = create(db, clock)
    with UnitOfWork(db) as uow:
        uow.config.admin_tokens.revoke(token_id, clock())
        uow.commit()

    with UnitOfWork(db) as uow:
        with pytest.raises(NotFound):
            uow.config.admin_tokens.revoke(token_id, clock())
        with pytest.raises(NotFound):
            uow.config.admin_tokens.revoke(token_id + 1000, clock())
