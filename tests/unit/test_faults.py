"""The test-only fault hook (shared/faults.py): off unless its variable names a file, no
configuration sets that variable, and the faults follow the file as it changes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import faults
from shared.errors import ServiceUnavailable
from shared.votes import PublicKeyring, SigningKey, sign_round

ROOT = Path(__file__).resolve().parents[2]
KEY_1, KEY_3 = SigningKey.generate(), SigningKey.generate()
# What the transactions service would verify with: the validators' public keys.
KEYRING = PublicKeyring.of({"validator_1": KEY_1, "validator_3": KEY_3})


def armed_with(env):
    code = "import shared.faults as f; print(f.armed)"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip() == "True"


def test_the_hook_is_armed_only_when_its_variable_names_a_file(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != faults.ENV}
    assert not armed_with(env)
    assert armed_with(dict(env, **{faults.ENV: str(tmp_path / "faults.json")}))


@pytest.mark.parametrize("name", ["config.yml", "docker-compose.yml",
                                  "docker-compose.offline.yml", "Makefile", "Dockerfile",
                                  "deploy", "paysys", "services", "gateway"])
def test_no_configuration_or_service_sets_the_variable(name):
    path = ROOT / name
    files = [path] if path.is_file() else sorted(
        file for file in path.rglob("*") if file.is_file() and "__pycache__" not in file.parts)
    assert files
    assert not [str(file) for file in files
                if faults.ENV in file.read_text(encoding="utf-8", errors="replace")]


def write(path, content):
    path.write_text(json.dumps(content))


def test_the_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "faults.json"
    hook = faults.Faults(str(path))
    assert hook.of("ledger") == {}
    write(path, {"ledger": {"refuse_posting": True}})
    assert hook.of("ledger") == {"refuse_posting": True}
    assert hook.of("validator_1") == {}
    write(path, {"ledger": {"lose_posting_reply_ms": 6000}})
    assert hook.of("ledger") == {"lose_posting_reply_ms": 6000}
    path.unlink()
    assert hook.of("ledger") == {}


def test_a_posting_is_refused_or_its_reply_held_back(tmp_path):
    path = tmp_path / "faults.json"
    hook = faults.Faults(str(path))
    assert hook.posting("ledger") == 0
    write(path, {"ledger": {"refuse_posting": True}})
    with pytest.raises(ServiceUnavailable):
        hook.posting("ledger")
    write(path, {"ledger": {"lose_posting_reply_ms": 6500}})
    assert hook.posting("ledger") == 6.5


DECISIONS = [("tx-1", "approve", []), ("tx-2", "reject", ["insufficient_funds"])]


def test_only_the_named_validator_is_slowed_or_forged(tmp_path):
    path = tmp_path / "faults.json"
    slept = []
    hook = faults.Faults(str(path), sleep=slept.append)
    write(path, {"validator_2": {"vote_delay_ms": 1500}, "validator_3": {"forge_votes": "key"}})
    assert hook.voting("validator_1") is None
    assert hook.voting("validator_2") is None
    assert slept == [1.5]
    forged = hook.voting("validator_3")(DECISIONS, KEY_3)
    assert forged["validator_id"] == "validator_3"
    assert [(v["transaction_id"], v["decision"]) for v in forged["votes"]] == [
        ("tx-1", "approve"), ("tx-2", "reject")]
    assert KEYRING.check_round(forged)[1] == "bad signature"


def test_a_vote_that_claims_another_validators_name_does_not_verify_as_theirs(tmp_path):
    path = tmp_path / "faults.json"
    hook = faults.Faults(str(path))
    write(path, {"validator_3": {"forge_votes": "as:validator_1"}})
    forged = hook.voting("validator_3")(DECISIONS, KEY_3)
    assert forged["validator_id"] == "validator_1"
    assert KEYRING.check_round(forged)[1] == "unknown key"


def test_a_validator_can_be_made_to_sign_with_a_key_from_a_file(tmp_path):
    """What the system test of a retired key uses: validator_3 keeps its old key."""
    retired = tmp_path / "retired.key"
    retired.write_bytes(KEY_1.pem())
    path = tmp_path / "faults.json"
    hook = faults.Faults(str(path))
    write(path, {"validator_3": {"forge_votes": "key_file:{}".format(retired)}})
    forged = hook.voting("validator_3")(DECISIONS, KEY_3)
    assert (forged["validator_id"], forged["key_id"]) == ("validator_3", KEY_1.key_id)
    assert KEYRING.check_round(forged)[1] == "unknown key"
