"""The signing keys as Kubernetes Secrets: one per process, holding only the keys it reads.

    python -m deploy.secrets --namespace paysys | kubectl apply -f -
    python -m deploy.secrets --namespace paysys --keys DIR | kubectl apply -f -

Without --keys it makes a fresh key set (what `paysys keys` makes) in a temporary
directory and forgets it once printed: the cluster keeps the only copy. With --keys it
reads (and completes) the key set in DIR. The Deployments mount paysys-keys-<process>.
To rotate a validator's vote key, rotate it in DIR (`paysys keys rotate validator_N` with
PAYSYS_VALIDATOR_KEYS_DIR=DIR) and apply the Secrets again: docs/keys.md.
"""
import argparse
import base64
import sys
import tempfile
from pathlib import Path

import yaml

from deploy.k8s import PART_OF, secret_name
from paysys.processes import default_config, processes
from services.notifications.secret_box import ensure_webhook_key
from shared.tokens import ensure_keypair
from shared.votes import ensure_validator_keys


def key_config(directory):
    """The default configuration with every key file in ``directory``."""
    config = default_config()
    config["auth"]["private_key_file"] = str(Path(directory) / "jwt-ed25519.pem")
    config["tokens"]["public_key_file"] = str(Path(directory) / "jwt-ed25519.pub.pem")
    config["validators"]["keys_dir"] = str(directory)
    config["notifications"]["webhook_key_file"] = str(Path(directory) / "webhook-secrets.key")
    return config


def secrets(directory, namespace):
    """A Secret per process that reads keys, from the key set in ``directory``."""
    config = key_config(directory)
    ensure_keypair(config)
    ensure_validator_keys(config)
    ensure_webhook_key(config)
    found = []
    for process in processes():
        if not process.keys:
            continue
        found.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name(process), "namespace": namespace,
                         "labels": dict(PART_OF, **{"app.kubernetes.io/name": process.dns_name})},
            "data": {name: base64.b64encode((Path(directory) / name).read_bytes()).decode()
                     for name in process.keys},
        })
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m deploy.secrets",
        description="Print the Secrets of the signing keys, one per process with only the "
        "keys it reads, for `kubectl apply -f -`.")
    parser.add_argument("--namespace", required=True, help="where the Deployments run")
    parser.add_argument("--keys", metavar="DIR",
                        help="an existing key set (missing keys are made there); default: "
                        "a fresh one, kept nowhere but in the Secrets")
    args = parser.parse_args(argv)
    if args.keys:
        documents = secrets(args.keys, args.namespace)
    else:
        with tempfile.TemporaryDirectory() as directory:
            documents = secrets(directory, args.namespace)
    yaml.safe_dump_all(documents, sys.stdout, sort_keys=False, explicit_start=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
