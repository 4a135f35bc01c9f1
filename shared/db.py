"""PostgreSQL access for services: one engine per service process, one schema per service."""
from contextlib import contextmanager

import psycopg2.extensions
from eventlet.patcher import original

from nameko.extensions import DependencyProvider, Extension, SharedExtension
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from shared import work_counters
from shared.catalog import process_name_of
from shared.errors import unanswered
from shared.pg_urls import sqlalchemy_form
from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.wire_json import compact, parse


def sqlalchemy_url(database_url):
    """config.yml holds a plain libpq URL (postgresql://…, several hosts for a primary and
    its standby: shared/pg_urls.py); SQLAlchemy is told to use psycopg2, which psycogreen
    makes cooperative (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
    return make_url(sqlalchemy_form(database_url)).set(drivername="postgresql+psycopg2")


# SQLSTATE 25006: a write on a server that takes none, a standby.
READ_ONLY_SQL_TRANSACTION = "25006"


def _read_only_as_disconnect(context):
    """A pooled connection to a server that became a standby (a primary demoted by a
    failover, then rejoined) answers writes with 25006. Counted as a disconnect, SQLAlchemy
    replaces every connection of the pool, and the new ones reach the primary (the URL asks
    libpq for the read-write host); the caller's retry, safe on every money path, succeeds."""
    if getattr(context.original_exception, "pgcode", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True


def make_engine(database, pool_size, application_name, session_settings=None):
    """An engine whose every connection has the configured timeouts. ``database``: the
    shared settings' ``database`` (or, for tools and tests, a dict of its keys);
    ``session_settings``: more server settings for each of its sessions (``{name: value}``).

    No ``pool_pre_ping``: it costs a round trip every time a connection is taken from the
    pool. A connection the server closed while it sat in the pool (a restart, a failover)
    is replaced when taken instead, for the price of a poll() of its socket
    (``_closed_by_the_server``). One that dies in use fails its statement (a 503 the
    caller retries, every money path being idempotent), and SQLAlchemy then replaces every
    connection of the pool made before the failure, so a service survives a restart, or a
    failover to a standby, without being restarted itself.
    """
    if isinstance(database, dict):
        database = _Keys(database)
    settings = dict(session_settings or {}, statement_timeout=int(database.statement_timeout_ms))
    options = " ".join("-c {}={}".format(name, value) for name, value in settings.items())
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
    event.listen(engine, "handle_error", _read_only_as_disconnect)
    event.listen(engine, "checkout", _closed_by_the_server)
    return engine


# The real poll(), not eventlet's green select (which has none): with no timeout it never
# blocks, and it takes descriptors above 1024, which select() does not.
_poll = original("select").poll
_READABLE = original("select").POLLIN | original("select").POLLHUP | original("select").POLLERR


def _closed_by_the_server(dbapi_connection, connection_record, connection_proxy):
    """An idle connection has nothing to read; one the server closed meanwhile has its
    goodbye (a FATAL message, or end of file). Such a one is replaced before it is used
    (SQLAlchemy takes another on DisconnectionError), so the first request after a
    PostgreSQL restart or failover is not the one that finds the connection dead."""
    if dbapi_connection.closed:
        raise DisconnectionError("closed")
    poller = _poll()
    poller.register(dbapi_connection.fileno(), _READABLE)
    if poller.poll(0):
        raise DisconnectionError("closed by the server while in the pool")


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
    never answered), or it is no primary any more (``_read_only_as_disconnect``), as
    opposed to an error the server answered (a deadlock, a constraint)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OperationalError, InterfaceError)) and (
        getattr(error.orig, "pgcode", None) is None)


@contextmanager
def unreachable_as_unavailable():
    """A database out of reach is a 503 with Retry-After for the client (nothing was
    committed, or every money path being idempotent, a retry is safe), not a 500."""
    try:
        yield
    except DBAPIError as error:
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
