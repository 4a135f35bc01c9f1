"""Webhook secrets at rest: sealed with Fernet (AES-128-CBC and HMAC-SHA256, from
``cryptography``) under a key only the notifications service reads.

Every delivery is signed with its webhook's secret, so the secret must be kept, but a copy
of the table (a backup, a read replica, a leaked dump) must not let anyone sign events.

The key file, ``<keys dir>/webhook-secrets.key`` unless ``notifications.webhook_key_file``
names another, is made by ``paysys keys`` and ``make up`` like the other keys. It holds one
Fernet key a line: the first seals, every one opens (room to rotate: a new key goes first,
and an old one stays while rows sealed with it remain).

Rows written before sealing existed hold the secret in clear. They are told apart by their
``whsec_`` prefix, which no Fernet token has (a token is base64 of a 0x80 version byte:
"gAAAAA…"), so they keep signing after the upgrade; the service seals them as soon as it
runs (``records.seal_clear_secrets``). No migration can do it: migrations do not have the
key, and must not.
"""
from cryptography.fernet import Fernet, MultiFernet

from services.notifications.settings import Settings
from shared.settings import load
from shared.shared_settings import SharedSettings

CLEAR_PREFIX = "whsec_"  # what every secret this service ever made starts with


def key_file(config):
    """The key file of ``config`` (config.yml as a dict), read through the settings models."""
    return Settings.from_config(config).key_path(
        load(SharedSettings, config).supervisor.keys_path)


def ensure_webhook_key(config):
    """Create the key file if it does not exist yet. True if created."""
    path = key_file(config)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(Fernet.generate_key() + b"\n")
    path.chmod(0o600)
    return True


def load_webhook_key(config):
    """The ``SecretBox`` of the configured key file; FileNotFoundError if there is none,
    ValueError if it holds no valid key."""
    path = key_file(config)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    try:
        return SecretBox([Fernet(line) for line in lines])
    except ValueError:
        raise ValueError("{} does not hold Fernet keys (one a line)".format(path)) from None


class SecretBox:
    def __init__(self, fernets):
        if not fernets:
            raise ValueError("no key")
        self._fernet = MultiFernet(list(fernets))

    def seal(self, secret):
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, stored):
        """The secret of a stored value, sealed or (from before sealing) clear.
        ``cryptography.fernet.InvalidToken`` for a sealed value no key opens (a wrong key
        file, or tampering)."""
        if is_clear(stored):
            return stored
        return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")


def is_clear(stored):
    return stored.startswith(CLEAR_PREFIX)
