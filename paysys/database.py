"""Creates the database and runs every service's migrations (alembic)."""
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
from alembic import command
from alembic.config import Config as AlembicConfig
from psycopg2 import sql

from paysys.checks import postgres_admin_dsn
from shared.catalog import SERVICES

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / "shared" / "migrations"


def versions_dir(service):
    package = "gateway" if service.name == "gateway" else "services/{}".format(service.name)
    return ROOT / package / "migrations" / "versions"


def ensure_database(database_url):
    """Create the database named in ``database_url`` if it does not exist. True if created."""
    name = urlsplit(database_url).path.lstrip("/")
    connection = psycopg2.connect(postgres_admin_dsn(database_url), connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        connection.close()


def alembic_config(service, database_url):
    config = AlembicConfig()
    config.set_main_option("script_location", str(ENV_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions_dir(service)))
    config.attributes["schema"] = service.schema
    config.attributes["url"] = database_url
    return config


def migrate(database_url, report=print):
    """Bring every service's schema to its newest revision."""
    for service in SERVICES:
        command.upgrade(alembic_config(service, database_url), "head")
        report("  {:<14} schema {:<14} up to date".format(service.name, service.schema))
