import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.settings import GatewaySettings
from paysys.settings_report import docs, settings_fields
from services.auth.settings import AuthSettings
from services.notifications.settings import NotificationsSettings
from shared.catalog import SERVICES, process_names, rpc_identities, settings_models
from shared.config import kafka_bootstrap_servers, load_config
from shared.settings import SettingsError, load, load_all

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_a_whole_value_reference_takes_the_type_of_its_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("POOL", "5")
    monkeypatch.setenv("FLAG", "true")
    config = load_config(write(tmp_path, "pool: ${POOL:3}\nflag: ${FLAG:false}\nn: ${UNSET_X:7}\n"))
    assert config == {"pool": 5, "flag": True, "n": 7}


def test_a_reference_inside_a_string_stays_a_string(tmp_path, monkeypatch):
    monkeypatch.setenv("HOST", "db.internal")
    config = load_config(write(tmp_path, "url: postgresql://u@${HOST:localhost}:${PORT:5432}/x\n"))
    assert config == {"url": "postgresql://u@db.internal:5432/x"}


def test_an_unset_variable_without_default_is_empty(tmp_path):
    config = load_config(write(tmp_path, "servers: ${UNSET_PAYSYS_VARIABLE}\n"))
    assert config == {"servers": ""}


def test_the_repository_config_has_every_address_and_limit(monkeypatch):
    for name in ("PAYSYS_KAFKA_BOOTSTRAP_SERVERS", "PAYSYS_VALIDATORS", "PAYSYS_GATEWAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()
    assert config["WEB_SERVER_ADDRESS"] == "127.0.0.1:8000"
    assert config["validators"]["pool_size"] == 3
    assert kafka_bootstrap_servers(config) == "127.0.0.1:9092"
    assert process_names(config) == [
        "auth", "transactions", "validator_1", "validator_2", "validator_3",
        "payments", "ledger", "notifications", "gateway",
    ]
    assert "gateway" not in rpc_identities(config)


def test_the_validator_pool_size_is_configurable(monkeypatch):
    monkeypatch.setenv("PAYSYS_VALIDATORS", "5")
    assert rpc_identities(load_config())[2:7] == [
        "validator_1", "validator_2", "validator_3", "validator_4", "validator_5"]


def documented_variables():
    """``{variable: default}`` of the tables of docs/configuration.md."""
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`PAYSYS_"):
            names = re.findall(r"`(PAYSYS_[A-Z0-9_]+)`", cells[0])
            default_index = 3 if len(cells) == 5 else 1
            defaults = re.findall(r"`([^`]*)`", cells[default_index]) or [""]
            rows.update(zip(names, defaults + [""] * (len(names) - len(defaults))))
    return rows


def test_docs_list_every_variable_config_yml_reads_with_its_default():
    """An operator finds every setting in docs/configuration.md, with the default
    config.yml gives it."""
    read = dict(re.findall(r"\$\{(PAYSYS_[A-Z0-9_]+):?([^}]*)\}",
                           (ROOT / "config.yml").read_text(encoding="utf-8")))
    rows = documented_variables()
    assert sorted(set(read) - set(rows)) == []
    differ = {name: (default, rows[name]) for name, default in read.items()
              if default and rows[name] and default != rows[name]}
    assert differ == {}


def test_docs_list_every_variable_the_code_reads_from_the_environment():
    code = "".join(path.read_text(encoding="utf-8")
                   for top in ("shared", "services", "gateway", "paysys", "paysys_mirror")
                   for path in (ROOT / top).rglob("*.py"))
    read = set(re.findall(r"[\"'](PAYSYS_[A-Z0-9_]+)[\"']", code)) - {"PAYSYS_TEST_FAULTS_FILE"}
    assert sorted(read - set(documented_variables())) == []


def test_docs_configuration_md_is_generated_from_the_models():
    """`make config-docs` rewrites it; a setting added without doing so fails here."""
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == docs(), (
        "docs/configuration.md is out of date: run `make config-docs`")


# --- the settings models ---------------------------------------------------------------------

# Keys of config.yml that Nameko itself reads, and no model of ours.
NAMEKO_KEYS = {("parent_calls_tracked",), ("serializer",), ("SERIALIZERS",)}


def config_yml_keys():
    raw = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    keys = set()
    for key, value in raw.items():
        if isinstance(value, dict) and key != "SERIALIZERS":
            keys.update((key, sub) for sub in value)
        else:
            keys.add((key,))
    return keys


def test_every_key_of_config_yml_is_a_setting_of_one_model_and_every_setting_a_key():
    declared = [path for model in settings_models().values()
                for path, _ in settings_fields(model)]
    assert len(declared) == len(set(declared)), "a key declared by two models"
    assert sorted(config_yml_keys() - NAMEKO_KEYS - set(declared)) == []
    assert sorted(set(declared) - config_yml_keys()) == []


def test_every_model_accepts_the_repository_config_and_every_setting_has_a_meaning():
    loaded = load_all(settings_models(), load_config())
    assert set(loaded) == {"shared", *(service.name for service in SERVICES)}
    for model in settings_models().values():
        assert [path for path, field in settings_fields(model) if not field.description] == []


def test_email_is_off_by_default_in_one_place(monkeypatch):
    monkeypatch.delenv("PAYSYS_EMAIL_ENABLED", raising=False)
    settings = load(NotificationsSettings, load_config())
    assert settings.notifications.email_enabled is False
    assert NotificationsSettings.model_fields["notifications"].annotation.model_fields[
        "email_enabled"].is_required()


@pytest.mark.parametrize("variable, value, named", [
    ("PAYSYS_RPC_TIMEOUT_MS", "-5", "greater than 0"),
    ("PAYSYS_SMTP_PORT", "70000", "less than or equal to 65535"),
    ("PAYSYS_DB_POOL_SIZE", "many", "valid integer"),
    ("PAYSYS_EMAIL_ENABLED", "perhaps", "valid boolean"),
    ("PAYSYS_LOG_LEVEL", "LOUD", "'DEBUG'"),
    ("PAYSYS_VALIDATORS", "0", "greater than 0"),
])
def test_a_bad_value_names_its_variable_its_value_and_what_is_wrong(
        monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_all(settings_models(), load_config())
    (line,) = [line for line in str(raised.value).splitlines() if variable in line]
    assert "{}={!r}".format(variable, value) in line and named in line


def test_a_rule_across_settings_is_named(monkeypatch):
    monkeypatch.setenv("PAYSYS_LOGIN_BACKOFF_CAP_S", "100000")
    with pytest.raises(SettingsError, match="login_forget_after_s must be at least"):
        load(AuthSettings, load_config())


def test_a_misspelt_key_is_refused(tmp_path):
    config = load_config()
    config["gateway"]["rpc_timout_ms"] = 10
    with pytest.raises(SettingsError, match="gateway.rpc_timout_ms in config.yml: no such"):
        load(GatewaySettings, config)


def run(*args, **env):
    environ = dict(os.environ, **env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=120)


def test_a_service_with_a_bad_value_does_not_start_and_says_why():
    done = run("-m", "paysys.runner", "payments", PAYSYS_PAYMENT_HOLD_S="a week")
    assert done.returncode == 2
    assert "payments: not started." in done.stderr and "Traceback" not in done.stderr
    assert "PAYSYS_PAYMENT_HOLD_S='a week' (payments.hold_time_s)" in done.stderr


def test_paysys_stops_before_doing_anything_on_a_bad_value():
    done = run("-m", "paysys.cli", "up", PAYSYS_RPC_TIMEOUT_MS="0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "PAYSYS_RPC_TIMEOUT_MS='0' (rpc.timeout_ms)" in done.stderr
    assert "Checking dependencies" not in done.stdout


def test_paysys_config_prints_the_effective_values_with_secrets_masked():
    done = run("-m", "paysys.cli", "config",
               PAYSYS_DATABASE_URL="postgresql://app:s3cret@db.internal:5432/paysys",
               PAYSYS_AMQP_URI="amqp://paysys:hunter2@mq:5672/prod",
               PAYSYS_REDIS_URL="redis://:r3dis@cache:6379/0", PAYSYS_RPC_TIMEOUT_MS="7000")
    assert done.returncode == 0, done.stderr
    report = yaml.safe_load(done.stdout)
    assert set(report) == set(settings_models())
    shared = report["shared"]
    assert shared["database"]["url"] == "postgresql://app:***@db.internal:5432/paysys"
    assert shared["AMQP_URI"] == "amqp://paysys:***@mq:5672/prod"
    assert shared["redis"]["url"] == "redis://:***@cache:6379/0"
    assert shared["rpc"]["timeout_ms"] == 7000
    assert not any(secret in done.stdout for secret in ("s3cret", "hunter2", "r3dis"))


def test_paysys_config_shows_one_model_as_a_table():
    done = run("-m", "paysys.cli", "config", "--service", "gateway", "--format", "table",
               PAYSYS_COALESCE_LANES="2")
    assert done.returncode == 0, done.stderr
    (row,) = [line.split() for line in done.stdout.splitlines()
              if "gateway.coalesce_lanes" in line]
    assert row == ["gateway", "gateway.coalesce_lanes", "2", "PAYSYS_COALESCE_LANES"]
    assert "shared" not in done.stdout


def test_paysys_config_says_which_value_is_bad():
    done = run("-m", "paysys.cli", "config", PAYSYS_IDEMPOTENCY_LEASE_S="90000")
    assert done.returncode == 2
    assert "idempotency.lease_s (90000) must be shorter than ttl_s (86400)" in done.stderr
