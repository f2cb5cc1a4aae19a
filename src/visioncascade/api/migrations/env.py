"""Alembic environment: migrates the database given by ``visioncascade db upgrade`` (or alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from visioncascade.api.storage import Base

config = context.config
target_metadata = Base.metadata

#: pg_advisory_xact_lock key held while migrating a PostgreSQL database: concurrent `db upgrade` runs
#: (replicas starting together) take turns instead of racing to create alembic_version.
MIGRATION_LOCK_ID = 0x7663_6D69_6772  # "vcmigr"


def _url() -> str:
    return config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    """Emit SQL without a database connection (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through a real connection, in one transaction (on PostgreSQL under an advisory lock)."""
    url = _url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            connection.commit()  # close the implicit transaction, or the migration's would never commit
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; the next run then finds the schema at head.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            context.run_migrations()
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
