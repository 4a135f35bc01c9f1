"""Databases of the tests' own on the local PostgreSQL: freshly migrated, dropped after."""
from contextlib import contextmanager

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def migrated_database(name):
    """The URL of database ``name``, created afresh with every service's migrations."""
    from harness.servers import drop_database
    from paysys.database import ensure_database, migrate

    url = "postgresql://postgres@127.0.0.1:5432/{}".format(name)
    drop_database(ADMIN_DSN, name)
    ensure_database(url)
    migrate(url, report=lambda line: None)
    try:
        yield url
    finally:
        drop_database(ADMIN_DSN, name)


@contextmanager
def pooled_engine(url, application_name):
    """A pooled SQLAlchemy engine on ``url``, as a service process has one."""
    from shared.config import load_config
    from shared.db import make_engine

    config = load_config()
    config["database"]["url"] = url
    engine = make_engine(config["database"], 5, application_name)
    try:
        yield engine
    finally:
        engine.dispose()
