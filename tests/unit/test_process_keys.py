"""`make up` gives each process only the keys it reads: read from the supervisord.conf it
writes, every program's key settings point into a directory of its own, and that directory
holds exactly its keys (tests/unit/test_deploy.py checks the same of compose and
Kubernetes)."""
import configparser
import re

import pytest

from paysys import process_keys, supervisor
from services.notifications.secret_box import ensure_webhook_key
from shared.catalog import process_names
from shared.config import load_config
from shared.tokens import ensure_keypair
from shared.votes import ensure_validator_keys, rotate_validator_key

KEY_VARIABLES = {"PAYSYS_JWT_PRIVATE_KEY_FILE", "PAYSYS_JWT_PUBLIC_KEY_FILE",
                 "PAYSYS_VALIDATOR_KEYS_DIR", "PAYSYS_WEBHOOK_KEY_FILE"}
# What each process may hold, by process name (docs/keys.md).
EXPECTED = {
    "gateway": {"jwt-ed25519.pub.pem"},
    "auth": {"jwt-ed25519.pem"},
    "validator_1": {"validator_1.key"},
    "validator_2": {"validator_2.key"},
    "validator_3": {"validator_3.key"},
    "transactions": {"validator_1.pub.json", "validator_2.pub.json", "validator_3.pub.json"},
    "notifications": {"webhook-secrets.key"},
}


@pytest.fixture
def config(tmp_path):
    config = load_config()
    config["supervisor"]["run_dir"] = str(tmp_path / "run")
    config["validators"].update(pool_size=3, keys_dir="")
    config["auth"]["private_key_file"] = ""
    config["tokens"]["public_key_file"] = ""
    config["notifications"]["webhook_key_file"] = ""
    ensure_keypair(config)
    ensure_validator_keys(config)
    ensure_webhook_key(config)
    return config


def programs(config):
    """``{program: {variable: value}}`` of the supervisord.conf `paysys up` writes."""
    run_dir = supervisor.RunDir(config)
    process_keys.distribute(config)
    parser = configparser.RawConfigParser()
    parser.read_string(supervisor.render_conf(config, run_dir))
    found = {}
    for section in parser.sections():
        if section.startswith("program:"):
            pairs = re.findall(r'(\w+)="([^"]*)"', parser[section].get("environment", ""))
            found[section[len("program:"):]] = dict(pairs)
    # The embedded Kafka broker (tansu) is no service of ours and reads no key.
    assert not KEY_VARIABLES & set(found.pop(supervisor.KAFKA_PROGRAM, {}))
    return found


def test_each_program_holds_exactly_its_keys(config):
    found = programs(config)
    assert set(found) == set(process_names(config))
    shared_keys = supervisor.RunDir(config).path / "keys"
    for name, env in found.items():
        own = process_keys.process_keys_dir(config, name)
        # Every key setting is pointed into its own directory: none falls back to the
        # key set (<run_dir>/keys), whatever config.yml's defaults say.
        assert KEY_VARIABLES <= set(env), name
        for variable in KEY_VARIABLES:
            assert env[variable].startswith(str(own)), (name, variable)
            assert not env[variable].startswith(str(shared_keys) + "/"), (name, variable)
        held = {path.name for path in own.iterdir()}
        assert held == EXPECTED.get(name, set()), name
        assert oct(own.stat().st_mode & 0o777) == "0o700"


def test_no_private_key_but_its_own_reaches_a_process(config):
    for name in programs(config):
        own = process_keys.process_keys_dir(config, name)
        private = {path.name for path in own.iterdir()
                   if path.suffix in (".key", ".pem") and not path.name.endswith(".pub.pem")}
        assert len(private) <= 1, (name, private)
    transactions = process_keys.process_keys_dir(config, "transactions")
    assert all(path.name.endswith(".pub.json") for path in transactions.iterdir())


def test_a_rotation_reaches_only_the_processes_that_hold_that_validators_keys(config):
    process_keys.distribute(config)
    rotate_validator_key(config, "validator_2", 60)
    assert sorted(process_keys.distribute(config)) == ["transactions", "validator_2"]
    for name in ("transactions", "validator_2"):
        own = process_keys.process_keys_dir(config, name)
        for path in own.iterdir():
            assert path.read_bytes() == (
                supervisor.RunDir(config).path / "keys" / path.name).read_bytes()


def test_a_key_a_process_no_longer_holds_is_taken_from_it(config):
    process_keys.distribute(config)
    stray = process_keys.process_keys_dir(config, "gateway") / "jwt-ed25519.pem"
    stray.write_text("left from some earlier layout")
    assert process_keys.distribute(config) == ["gateway"]
    assert not stray.exists()
