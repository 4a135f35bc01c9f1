"""Validator votes: each validator signs its vote with its own key (HMAC-SHA256).

A vote says a validator approved or rejected one transaction, and why. The
signature covers (transaction id, validator id, decision, reasons), so a vote
cannot be altered, replayed for another transaction, or passed off as another
validator's. The transactions service holds every validator's key to verify;
each validator process reads only its own.
"""
import hashlib
import hmac
import secrets
from shared.settings import load
from shared.shared_settings import SharedSettings

APPROVE, REJECT = "approve", "reject"
KEY_BYTES = 32


def key_file(config, validator_id):
    """``<validators.keys_dir>/<validator_id>.key`` of ``config`` (config.yml as a dict)."""
    return load(SharedSettings, config).validator_keys_path / "{}.key".format(validator_id)


def ensure_validator_keys(config):
    """Create a signing key for each validator of the pool that has none. The names created."""
    created = []
    for validator_id in load(SharedSettings, config).validators.names:
        path = key_file(config, validator_id)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(KEY_BYTES))
        path.chmod(0o600)
        created.append(validator_id)
    return created


def load_validator_key(config, validator_id):
    return bytes.fromhex(key_file(config, validator_id).read_text().strip())


def _message(transaction_id, validator_id, decision, reasons):
    return "\n".join([str(transaction_id), str(validator_id), str(decision),
                      ",".join(sorted(reasons))]).encode("utf-8")


def sign_vote(key, transaction_id, validator_id, decision, reasons):
    """The vote as it travels: ``{transaction_id, validator_id, decision, reasons, signature}``."""
    reasons = sorted(set(reasons))
    signature = hmac.new(key, _message(transaction_id, validator_id, decision, reasons),
                         hashlib.sha256).hexdigest()
    return {"transaction_id": transaction_id, "validator_id": validator_id,
            "decision": decision, "reasons": reasons, "signature": signature}


def verify_vote(key, vote):
    """True if ``vote`` carries a valid signature by the holder of ``key``."""
    try:
        expected = hmac.new(key, _message(vote["transaction_id"], vote["validator_id"],
                                          vote["decision"], vote["reasons"]),
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, str(vote["signature"]))
    except (KeyError, TypeError, AttributeError):
        return False
