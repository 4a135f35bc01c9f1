"""deploy/k8s/base/processes.yaml, rendered for the processes of ``paysys/processes.py``:
a Deployment per process (each validator its own), the gateway's Service, an HPA per
stateless service, the validators' PodDisruptionBudget, the migration Job and the policy
that lets Prometheus (namespace ``monitoring``) reach the metrics ports; and the prod
overlay's autoscaling patch.

What every process shares (settings, network policies, the service account) is plain YAML
in deploy/k8s/base/.
"""
from paysys.processes import KEYS_DIR, processes

PART_OF = {"app.kubernetes.io/part-of": "paysys"}
IMAGE = "paysys"
UID = 10001
HEARTBEAT_DIR = "/tmp"
# Per process, measured in the compose stack: 55-75 MiB idle; auth hashes passwords with
# Argon2id (19 MiB each, up to PAYSYS_MAX_WORKERS at once) and holds about 190 MiB.
# Batches of transfers take a core for moments.
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"},
             "limits": {"cpu": "1", "memory": "384Mi"}}
MORE_MEMORY = {"auth": {"requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"}}}
HPA_MAX_REPLICAS = 6
HPA_CPU_PERCENT = 70
PROD_MIN_REPLICAS = 2
# Skipped checkov checks, each with its reason (checkov reads these annotations).
CHECKOV_SKIPS = {
    "CKV_K8S_43": "the overlay pins the image (images: newTag/digest); the base names none",
    "CKV_K8S_35": "connection URLs reach config.yml through the environment; the keys, "
                  "the secrets that sign, are files",
}


def secret_name(process):
    return "paysys-keys-{}".format(process.dns_name)


def labels(process):
    return dict(PART_OF, **{"app.kubernetes.io/name": process.dns_name,
                            "app.kubernetes.io/component": process.service})


def _exec(*args):
    return {"exec": {"command": ["paysys", "health", *args]}}


def _probes(process):
    """Liveness only asks whether the process runs: GET /livez on its metrics port, 200
    while its Nameko container runs (a RabbitMQ restart must not restart every pod);
    readiness whether it serves (see paysys/heartbeat.py)."""
    if process.metrics_port:
        live = {"httpGet": {"path": "/livez", "port": "metrics"}}
    elif process.http_port:
        live = {"httpGet": {"path": "/health", "port": "http"}}
    else:
        live = _exec("--live")
    return {
        "startupProbe": dict(live, periodSeconds=5, timeoutSeconds=5, failureThreshold=24),
        "livenessProbe": dict(live, periodSeconds=10, timeoutSeconds=5, failureThreshold=3),
        "readinessProbe": dict(_exec(), periodSeconds=10, timeoutSeconds=5,
                               failureThreshold=3),
    }


def _env(pool_size, keys_env=None):
    """The connection settings every pod gets, then where its keys are (``keys_env``)."""
    env = [
        # Credentials from the operators' own Secrets (see docs/deployment.md, "Kubernetes").
        {"name": "PAYSYS_DATABASE_URL", "valueFrom": {"secretKeyRef": {
            "name": "paysys-postgres-app", "key": "uri"}}},
        {"name": "RABBITMQ_USERNAME", "valueFrom": {"secretKeyRef": {
            "name": "paysys-rabbitmq-default-user", "key": "username"}}},
        {"name": "RABBITMQ_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": "paysys-rabbitmq-default-user", "key": "password"}}},
        {"name": "PAYSYS_AMQP_URI",
         "value": "pyamqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@paysys-rabbitmq:5672/"},
        {"name": "PAYSYS_VALIDATORS", "value": str(pool_size)},
    ]
    env += [{"name": name, "value": value} for name, value in sorted((keys_env or {}).items())]
    return env


CONTAINER_SECURITY = {
    "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"}}
TMP_VOLUME = {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}


def _container(process, pool_size):
    container = {
        "name": "service",
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "args": [process.name],
        "envFrom": [{"configMapRef": {"name": "paysys-config"}}],
        "env": _env(pool_size, process.env),
        "resources": MORE_MEMORY.get(process.service, RESOURCES),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": HEARTBEAT_DIR}],
    }
    ports = []
    if process.http_port:
        ports.append({"name": "http", "containerPort": process.http_port})
    if process.metrics_port:
        ports.append({"name": "metrics", "containerPort": process.metrics_port})
    if ports:
        container["ports"] = ports
    container.update(_probes(process))
    if process.keys:
        container["volumeMounts"].append({"name": "keys", "mountPath": KEYS_DIR,
                                          "readOnly": True})
    return container


def _pod_spec(process, pool_size):
    spec = {
        "serviceAccountName": "paysys",
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY,
        # Workers finish what they started (the runner stops on SIGTERM).
        "terminationGracePeriodSeconds": 30,
        "containers": [_container(process, pool_size)],
        "volumes": [TMP_VOLUME],
    }
    if process.keys:
        # Only this process's keys; readable by the group the pod runs as (fsGroup).
        spec["volumes"].append({"name": "keys", "secret": {
            "secretName": secret_name(process), "defaultMode": 0o440}})
    if not process.scalable:
        # Validators on different nodes where there are several: one node lost costs
        # one vote, not the quorum.
        spec["affinity"] = {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {
                        "app.kubernetes.io/component": process.service}}}}]}}
    return spec


MONITORING_NAMESPACE = "monitoring"


def _pod_metadata(process):
    """Labels, and the annotations by which Prometheus's pod discovery finds the metrics
    port (the usual ``prometheus.io/*`` relabelling; deploy/monitoring/prometheus.yml)."""
    metadata = {"labels": labels(process)}
    if process.metrics_port:
        metadata["annotations"] = {"prometheus.io/scrape": "true",
                                   "prometheus.io/port": str(process.metrics_port),
                                   "prometheus.io/path": "/metrics"}
    return metadata


def metrics_policy(procs):
    """Prometheus, in the namespace ``monitoring``, may reach every metrics port (the
    kubelet's probes need no policy)."""
    ports = sorted(process.metrics_port for process in procs if process.metrics_port)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "paysys-metrics-ingress", "labels": dict(PART_OF)},
        "spec": {
            "podSelector": {"matchLabels": dict(PART_OF)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}],
                "ports": [{"protocol": "TCP", "port": ports[0], "endPort": ports[-1]}],
            }],
        },
    }


def _skips(*checks):
    return {"checkov.io/skip{}".format(i): "{}={}".format(check, CHECKOV_SKIPS[check])
            for i, check in enumerate(checks, 1)}


def deployment(process, pool_size):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "paysys-{}".format(process.dns_name),
            "labels": labels(process),
            "annotations": _skips("CKV_K8S_43", "CKV_K8S_35"),
        },
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app.kubernetes.io/name": process.dns_name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": _pod_metadata(process),
                         "spec": _pod_spec(process, pool_size)},
        },
    }


def service(process):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "paysys-{}".format(process.dns_name), "labels": labels(process)},
        "spec": {"selector": {"app.kubernetes.io/name": process.dns_name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def autoscaler(process):
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "paysys-{}".format(process.dns_name), "labels": labels(process)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": "paysys-{}".format(process.dns_name)},
            "minReplicas": 1,
            "maxReplicas": HPA_MAX_REPLICAS,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": HPA_CPU_PERCENT}}}],
        },
    }


def validators_budget(pool_size):
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "paysys-validators", "labels": dict(
            PART_OF, **{"app.kubernetes.io/component": "validator"})},
        # A drain evicts a validator only while a majority of the pool stays up: the
        # quorum that decides every transaction.
        "spec": {"minAvailable": pool_size // 2 + 1, "selector": {"matchLabels": dict(
            PART_OF, **{"app.kubernetes.io/component": "validator"})}},
    }


def migration_job(pool_size):
    """`paysys migrate`, once per apply: creates nothing but the schemas (the operator made
    the database). Migrations take an advisory lock, so a second run waits, then does
    nothing; finished Jobs are deleted after an hour, so the next apply runs it again."""
    labels_ = dict(PART_OF, **{"app.kubernetes.io/name": "migrate",
                               "app.kubernetes.io/component": "migrate"})
    container = {
        "name": "migrate",
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "command": ["paysys", "migrate"],
        "envFrom": [{"configMapRef": {"name": "paysys-config"}}],
        "env": _env(pool_size),
        "resources": RESOURCES,
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": HEARTBEAT_DIR}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "paysys-migrate", "labels": labels_,
                     "annotations": _skips("CKV_K8S_43", "CKV_K8S_35")},
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels_}, "spec": {
                "serviceAccountName": "paysys",
                "automountServiceAccountToken": False,
                "securityContext": POD_SECURITY,
                "restartPolicy": "OnFailure",
                "containers": [container],
                "volumes": [TMP_VOLUME],
            }},
        },
    }


def resources(procs=None):
    """Every object of processes.yaml, in a stable order."""
    procs = procs if procs is not None else processes()
    pool_size = sum(1 for process in procs if process.service == "validator")
    found = [migration_job(pool_size)]
    for process in procs:
        found.append(deployment(process, pool_size))
        if process.http_port:
            found.append(service(process))
        if process.scalable:
            found.append(autoscaler(process))
    if pool_size:
        found.append(validators_budget(pool_size))
    if any(process.metrics_port for process in procs):
        found.append(metrics_policy(procs))
    return found


def prod_autoscaling(procs=None):
    """The prod overlay's patch: two of every stateless process at least, so a pod lost
    or drained leaves one serving."""
    procs = procs if procs is not None else processes()
    return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
             "metadata": {"name": "paysys-{}".format(process.dns_name)},
             "spec": {"minReplicas": PROD_MIN_REPLICAS}}
            for process in procs if process.scalable]


HEADER = ("# Generated by `make deploy-generate` (deploy/k8s.py) from shared/catalog.py:\n"
          "# edit those, not this file.\n")


def _dump(documents):
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True  # plain YAML, no anchors: what kubectl users read

    return HEADER + yaml.dump_all(documents, Dumper=Dumper, sort_keys=False,
                                  default_flow_style=False, explicit_start=True, width=120)


def render(procs=None):
    return _dump(resources(procs))


def render_prod_autoscaling(procs=None):
    return _dump(prod_autoscaling(procs))
