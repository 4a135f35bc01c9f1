import re

from shared.catalog import process_names, rpc_identities
from shared.config import kafka_bootstrap_servers, load_config


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


def test_the_docs_list_every_variable_config_yml_reads_with_its_default():
    """An operator finds every setting in the table of docs/configuration.md, with the
    default config.yml gives it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    read = dict(re.findall(r"\$\{(PAYSYS_[A-Z0-9_]+):?([^}]*)\}",
                           (root / "config.yml").read_text(encoding="utf-8")))
    table = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`PAYSYS_"):
            names = re.findall(r"`(PAYSYS_[A-Z0-9_]+)`", cells[0])
            defaults = re.findall(r"`([^`]*)`", cells[1]) or [""]
            rows.update(zip(names, defaults + [""] * (len(names) - len(defaults))))
    assert sorted(set(read) - set(rows)) == []
    differ = {name: (default, rows[name]) for name, default in read.items()
              if default and rows[name] and default != rows[name]}
    assert differ == {}
