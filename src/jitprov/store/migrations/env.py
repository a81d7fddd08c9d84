"""Alembic environment: runs migrations on the engine handed over by ``Database``.

On SQLite, foreign keys are off while migrations run: a batch operation rebuilds a table
(copy, drop, rename), and dropping a parent table with foreign keys on deletes every row that
references it through ``ON DELETE CASCADE`` (a downgrade that rebuilt ``account`` emptied
``identity``, ``role_grant``, ``pending_link``...). They are checked, then back on, after."""

from __future__ import annotations

from alembic import context

from jitprov.store.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = engine.dialect.name == "sqlite"
    raw = connection.connection.dbapi_connection if sqlite else None
    if raw is not None:  # outside any transaction (the pragma is a no-op inside one)
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
            if raw is not None:
                broken = raw.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows whose foreign keys point "
                                       f"nowhere: {broken[:5]}")
        connection.commit()
    finally:
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")
