"""Alembic environment: runs migrations on the engine handed over by ``Database``."""

from __future__ import annotations

from alembic import context

from jitprov.store.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
