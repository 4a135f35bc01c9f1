"""PostgreSQL access for services: one engine per service process, one schema per service."""
from contextlib import contextmanager

import psycopg2.extensions

from nameko.extensions import DependencyProvider, Extension, SharedExtension
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.exc import InterfaceError, OperationalError

from shared import work_counters
from shared.catalog import process_name_of
from shared.errors import unanswered
from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.wire_json import compact, parse


def sqlalchemy_url(database_url):
    """config.yml holds a plain libpq URL (postgresql://…); SQLAlchemy is told to use psycopg2,
    which psycogreen makes cooperative (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
    return make_url(database_url).set(drivername="postgresql+psycopg2")


def make_engine(database, pool_size, application_name):
    """An engine whose every connection has the configured timeouts. ``database``: the
    shared settings' ``database`` (or, for tools and tests, a dict of its keys).

    No ``pool_pre_ping``: it costs a round trip every time a connection is taken from the
    pool. A connection that died with a PostgreSQL restart fails its first statement
    instead (a 503 the caller retries, every money path being idempotent), and SQLAlchemy
    then replaces every connection of the pool made before the failure, so a service
    survives a restart without being restarted itself.
    """
    if isinstance(database, dict):
        database = _Keys(database)
    options = "-c statement_timeout={}".format(int(database.statement_timeout_ms))
    engine = create_engine(
        sqlalchemy_url(database.url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=3600,
        # jsonb read and written by orjson (votes, events, metadata come back by the batch).
        json_serializer=compact,
        json_deserializer=parse,
        connect_args={
            "connect_timeout": int(database.connect_timeout_s),
            "application_name": application_name,
            "options": options,
        },
    )
    event.listen(engine, "commit", lambda connection: work_counters.count(
        work_counters.DB_COMMITS))
    event.listen(engine, "connect", _uuids_as_text)
    return engine


class _Keys:
    def __init__(self, values):
        self.__dict__.update(values)


# Every id is text here (``UUID(as_uuid=False)``): psycopg2 hands uuid columns over as
# text, rather than parsing each into a uuid.UUID that SQLAlchemy then turns back into
# text — a batch's rows carry several ids each.
UUID_AS_TEXT = psycopg2.extensions.new_type((2950,), "UUID_AS_TEXT", lambda value, cursor: value)
UUID_ARRAY_AS_TEXT = psycopg2.extensions.new_array_type((2951,), "UUID_ARRAY_AS_TEXT",
                                                        UUID_AS_TEXT)


def _uuids_as_text(dbapi_connection, connection_record):
    # After SQLAlchemy's own connect hook, which registers the uuid.UUID parser.
    psycopg2.extensions.register_type(UUID_AS_TEXT, dbapi_connection)
    psycopg2.extensions.register_type(UUID_ARRAY_AS_TEXT, dbapi_connection)


def typed(table):
    """The column types of ``table`` by name, for a textual statement that answers its rows
    (``text(...).columns(**typed(table))``): ids come back as text, as from a select()."""
    return {column.name: column.type for column in table.c}


def is_unreachable(error):
    """PostgreSQL could not be reached or the connection broke (no SQLSTATE: the server
    never answered), as opposed to an error the server answered (a deadlock, a constraint)."""
    return isinstance(error, (OperationalError, InterfaceError)) and (
        error.connection_invalidated or getattr(error.orig, "pgcode", None) is None)


@contextmanager
def unreachable_as_unavailable():
    """A database out of reach is a 503 with Retry-After for the client (nothing was
    committed, or every money path being idempotent, a retry is safe), not a 500."""
    try:
        yield
    except (OperationalError, InterfaceError) as error:
        if not is_unreachable(error):
            raise
        raise unanswered("PostgreSQL is unavailable: {}".format(
            str(error.orig).strip() or type(error.orig).__name__)) from error


class DatabaseAccess:
    """What a worker sees: transactions and connections on the service's engine."""

    def __init__(self, engine, schema):
        self.engine = engine
        self.schema = schema

    @contextmanager
    def transaction(self):
        """A connection inside one database transaction: commits on success, rolls back on error."""
        with unreachable_as_unavailable(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def connection(self):
        with unreachable_as_unavailable(), self.engine.connect() as connection:
            yield connection

    def schema_version(self):
        """The service's migration revision: proves the database answers and the schema exists."""
        with self.engine.connect() as connection:
            return connection.execute(
                text('SELECT version_num FROM "{}".alembic_version'.format(self.schema))
            ).scalar_one()


class Engine(SharedExtension):
    """The process's one engine: every ``Database`` dependency of the service shares it (and
    so its pool), however many extensions declare one."""

    engine = None

    def setup(self):
        if self.engine is None:
            database = settings_of(self.container, SharedSettings).database
            self.engine = make_engine(
                database,
                pool_size=database.pool_size,
                application_name="paysys-{}".format(process_name_of(self.container)),
            )

    def stop(self):
        if self.engine is not None:
            self.engine.dispose()

    def kill(self):
        self.stop()


class DatabaseClient(Extension):
    """Access to the service's schema for any extension: a provider's own background work
    (a batch, a relay) nests one, as a worker's ``Database`` dependency does."""

    shared_engine = Engine()

    def __init__(self, schema):
        self.schema = schema

    @property
    def engine(self):
        if self.shared_engine.engine is None:
            # Nameko sets extensions up in no set order: whoever needs the engine first
            # makes it (Engine.setup makes it once).
            self.shared_engine.setup()
        return self.shared_engine.engine

    def access(self):
        return DatabaseAccess(self.engine, self.schema)


class Database(DependencyProvider):
    """Gives each worker access to the service's own schema. Workers share the process's
    pool (``database.pool_size``, as many again under a burst): a worker holds a connection
    only for the statements of one transaction."""

    def __init__(self, schema):
        self.schema = schema
        self.client = DatabaseClient(schema)

    @property
    def engine(self):
        return self.client.engine

    def get_dependency(self, worker_ctx):
        return self.client.access()
