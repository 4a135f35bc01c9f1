"""The database URL of a primary and its standby (PAYSYS_POSTGRES_HA=1): libpq's multi-host
form in config.yml, SQLAlchemy's form for the engines, and what psycopg2 is handed; where
the formation lives."""
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql.psycopg2 import dialect

from paysys.checks import postgres_admin_dsn
from paysys.postgres_ha import OS_USER_AS_ROOT, Cluster, data_root
from paysys.settings_report import mask
from shared.config import load_config
from shared.db import sqlalchemy_url
from shared.pg_urls import database_of, hosts_of, multi_host_url, user_of
from shared.settings import load
from shared.shared_settings import SharedSettings

PAIR = ["127.0.0.1:5442", "127.0.0.1:5443"]


def connect_arguments(url):
    """What SQLAlchemy's psycopg2 dialect passes to psycopg2.connect for ``url``."""
    return dialect().create_connect_args(sqlalchemy_url(url))[1]


def shared_settings(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load(SharedSettings, load_config())


def test_the_url_names_both_nodes_and_asks_for_the_writable_one():
    url = multi_host_url("postgresql://postgres:s3cret@127.0.0.1:5432/paysys?sslmode=disable",
                         PAIR)
    assert url == ("postgresql://postgres:s3cret@127.0.0.1:5442,127.0.0.1:5443/paysys"
                   "?sslmode=disable&target_session_attrs=read-write")
    assert hosts_of(url) == PAIR
    assert (user_of(url), database_of(url)) == ("postgres", "paysys")


def test_an_existing_target_session_attrs_is_replaced_not_doubled():
    url = multi_host_url("postgresql://u@h:1/db?target_session_attrs=any", PAIR)
    assert url.count("target_session_attrs") == 1
    assert url.endswith("target_session_attrs=read-write")


def test_the_engines_hand_libpq_every_host_and_port_in_order():
    arguments = connect_arguments(multi_host_url("postgresql://postgres:p%40ss@x:1/paysys",
                                                 ["10.0.0.1:5442", "10.0.0.2:6000"]))
    assert arguments["host"] == "10.0.0.1,10.0.0.2"
    assert arguments["port"] == "5442,6000"
    assert arguments["target_session_attrs"] == "read-write"
    assert (arguments["user"], arguments["password"], arguments["dbname"]) == (
        "postgres", "p@ss", "paysys")


def test_a_one_host_url_reaches_the_engines_as_before():
    arguments = connect_arguments("postgresql://postgres@127.0.0.1:5432/paysys")
    assert (arguments["host"], arguments["port"], arguments["dbname"]) == (
        "127.0.0.1", 5432, "paysys")
    assert "target_session_attrs" not in arguments


def test_the_admin_connection_of_make_up_keeps_both_hosts():
    url = multi_host_url("postgresql://postgres@127.0.0.1:5432/paysys", PAIR)
    assert postgres_admin_dsn(url) == (
        "postgresql://postgres@127.0.0.1:5442,127.0.0.1:5443/postgres"
        "?target_session_attrs=read-write")


def test_paysys_config_masks_the_password_of_a_multi_host_url():
    url = multi_host_url("postgresql://postgres:s3cret@127.0.0.1:5432/paysys", PAIR)
    shown = mask(url, secret=True)
    assert "s3cret" not in shown
    assert "127.0.0.1:5442,127.0.0.1:5443/paysys" in shown


def test_off_by_default_the_configured_url_is_used_as_it_is(monkeypatch):
    monkeypatch.delenv("PAYSYS_POSTGRES_HA", raising=False)
    settings = shared_settings(monkeypatch,
                               PAYSYS_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/x")
    assert settings.postgres_ha.enabled is False
    assert settings.database.url == "postgresql://postgres@127.0.0.1:5432/x"


def test_switched_on_every_process_reads_the_url_of_the_two_data_nodes(monkeypatch):
    settings = shared_settings(monkeypatch, PAYSYS_POSTGRES_HA="1",
                               PAYSYS_POSTGRES_HA_PORT_BASE="7000",
                               PAYSYS_DATABASE_URL="postgresql://app:pw@db.example:5432/x")
    assert settings.database.url == (
        "postgresql://app:pw@127.0.0.1:7001,127.0.0.1:7002/x?target_session_attrs=read-write")


def test_the_formation_lives_in_the_run_dir_on_its_own_ports(monkeypatch, tmp_path):
    for name, value in {"PAYSYS_POSTGRES_HA": "1", "PAYSYS_POSTGRES_HA_PORT_BASE": "7000",
                        "PAYSYS_RUN_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    cluster = Cluster(load_config())
    assert cluster.monitor_port == 7000
    assert cluster.node_ports == {"node_1": 7001, "node_2": 7002}
    assert cluster.link == tmp_path / "postgres-ha"
    assert cluster.pgdata("node_1") == cluster.root / "node_1"
    conf = cluster.render_conf()
    for program in ("pg_monitor", "pg_node_1", "pg_node_2"):
        assert "[program:{}]".format(program) in conf
    # Each keeper creates its node the first time and only runs it afterwards.
    assert "create postgres --pgport 7002 --name node_2" in conf
    assert conf.count("--run\n") == 3


def _postgres_user_exists():
    try:
        pwd.getpwnam(OS_USER_AS_ROOT)
        return True
    except KeyError:
        return False


@pytest.fixture
def public_directory():
    """A directory in /tmp anyone may pass through (a test's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="paysys-ha-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not _postgres_user_exists(),
                    reason="the keepers change user only when run as root")
def test_a_run_dir_the_postgres_user_cannot_reach_keeps_the_data_in_its_home(
        public_directory):
    private = public_directory / "private"
    private.mkdir(mode=0o700)
    home = pwd.getpwnam(OS_USER_AS_ROOT).pw_dir
    assert data_root(public_directory / "run") == public_directory / "run" / "postgres-ha"
    assert str(data_root(private / "run")).startswith(home)
    assert data_root(private / "run") != data_root(private / "other")
