"""Alembic environment shared by every service.

Each service keeps its own revisions (``services/<name>/migrations/versions``)
and its own version table inside its own schema, so their histories never mix.
`paysys migrate` passes the schema and database URL as attributes.
"""
from alembic import context
from sqlalchemy import create_engine, text

from shared.db import sqlalchemy_url

# Any fixed number: held while migrating so two `paysys migrate` never interleave.
MIGRATION_LOCK_KEY = 7_283_911

config = context.config
schema = config.attributes["schema"]
url = config.attributes["url"]

engine = create_engine(sqlalchemy_url(url))
with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        connection.execute(text('CREATE SCHEMA IF NOT EXISTS "{}"'.format(schema)))
        connection.commit()
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
engine.dispose()
