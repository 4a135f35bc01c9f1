#!/usr/bin/env bash
# `make compose-test`: the compose stack for real, with no image registry. It starts dockerd
# if none runs, builds the Debian base image (kept between runs) and every image, brings the
# stack up with docker-compose.offline.yml and waits for every health check, runs the bank
# workload and its checker against the gateway in the containers, kills one service
# container mid-run (kill -9 of its process: Docker restarts it), checks that nothing was
# lost (the checker, then `paysys reconcile` of the books and the Kafka mirror) and tears
# everything down, even on failure.
#
# Its stack is a compose project of its own on host ports picked free, so it runs beside
# `make up` or another stack. Settings (environment):
#   COMPOSE_TEST_CLIENTS (4)  COMPOSE_TEST_SECONDS (30)  COMPOSE_TEST_KILL (transactions)
#   COMPOSE_TEST_KEEP=1       leave the stack up after (docker-compose -p NAME down -v)
#   PYTHON (.venv/bin/python) runs the workload on this machine
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  "") ;;
  *) echo "compose-test.sh: no arguments (try --help)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-.venv/bin/python}
CLIENTS=${COMPOSE_TEST_CLIENTS:-4}
RUN_S=${COMPOSE_TEST_SECONDS:-30}
VICTIM=${COMPOSE_TEST_KILL:-transactions}
UP_TIMEOUT_S=240
export COMPOSE_PROJECT_NAME=${COMPOSE_TEST_PROJECT:-paysys-compose-test-$$}
export COMPOSE_FILE=docker-compose.yml:docker-compose.offline.yml
export PAYSYS_IMAGE_TAG=compose-test
# docker-compose 1.29 waits this long for an API answer (image builds are slow on 2 cores).
export COMPOSE_HTTP_TIMEOUT=300
started_s=$SECONDS

step() { printf '\n=== %s  [%d s]\n' "$*" $((SECONDS - started_s)); }
fail() { echo "compose-test: $*" >&2; exit 1; }

# --- Docker ----------------------------------------------------------------------------
step "Docker engine"
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker.io and docker-compose (Debian)"
  apt-get install -y -q --no-install-recommends docker.io docker-compose >/dev/null \
    || { apt-get update -q >/dev/null \
         && apt-get install -y -q --no-install-recommends docker.io docker-compose >/dev/null; }
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd --storage-driver overlay2 >>/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start; see /var/log/dockerd.log"
fi
docker info --format 'dockerd {{.ServerVersion}}, storage {{.Driver}}'

# Where an egress proxy re-signs TLS, pip in the builds must trust the machine's local CAs.
if [ -z "${EXTRA_CA_CERTS:-}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)
  export EXTRA_CA_CERTS
fi

# --- Ports: free ones on loopback, so nothing collides with what else runs here -------------
read -r GATEWAY_PORT KAFKA_PORT POSTGRES_PORT RABBITMQ_PORT REDIS_PORT < <("$PYTHON" -c '
import socket
sockets = [socket.socket() for _ in range(5)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
export PAYSYS_COMPOSE_GATEWAY_PORT=$GATEWAY_PORT PAYSYS_COMPOSE_KAFKA_PORT=$KAFKA_PORT \
  PAYSYS_COMPOSE_POSTGRES_PORT=$POSTGRES_PORT PAYSYS_COMPOSE_RABBITMQ_PORT=$RABBITMQ_PORT \
  PAYSYS_COMPOSE_REDIS_PORT=$REDIS_PORT
URL=http://127.0.0.1:$GATEWAY_PORT

# --- Images ------------------------------------------------------------------------------
step "Base image"
deploy/docker/base-image.sh
step "Images (the services' image and the servers')"
# `migrate` builds the image every service runs; the other services name the same image.
# Quiet unless a build fails (then its whole output).
build_log=$(mktemp)
if ! docker-compose build --quiet --force-rm postgres rabbitmq redis kafka migrate >"$build_log" 2>&1; then
  cat "$build_log"; rm -f "$build_log"
  fail "an image did not build"
fi
rm -f "$build_log"
docker image inspect "paysys:$PAYSYS_IMAGE_TAG" >/dev/null 2>&1 || fail "the image did not build"
echo "paysys:$PAYSYS_IMAGE_TAG: $(docker image inspect -f '{{.Size}}' "paysys:$PAYSYS_IMAGE_TAG" | numfmt --to=si)B"

# --- Up ---------------------------------------------------------------------------------
teardown() {
  status=$?
  set +e  # every step of the teardown runs, whatever the one before did
  [ -n "${workload_pid:-}" ] && kill "$workload_pid" 2>/dev/null && wait "$workload_pid" 2>/dev/null
  if [ "$status" -ne 0 ]; then
    echo; echo "--- compose-test failed: the state of the stack, and its logs' last lines"
    docker-compose ps || true
    docker-compose logs --no-color --tail=15 2>/dev/null | tail -200 || true
  fi
  if [ "${COMPOSE_TEST_KEEP:-}" = 1 ]; then
    echo "left up: COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME COMPOSE_FILE=$COMPOSE_FILE docker-compose down -v"
  else
    step "Down"
    docker-compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  fi
  echo "compose-test: $([ "$status" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started_s)) s"
}
trap teardown EXIT

step "Up: $COMPOSE_PROJECT_NAME, gateway on $URL"
up_started_s=$SECONDS
# up waits for the conditions of depends_on itself; it fails if a job fails or a server
# never becomes healthy.
up_log=$(mktemp)
if ! docker-compose up --detach --no-build --quiet-pull >"$up_log" 2>&1; then
  grep -v -e "^Creating" -e "^Starting" "$up_log"; rm -f "$up_log"
  fail "docker-compose up failed"
fi
rm -f "$up_log"

# Every container healthy, and every one-shot job exited 0.
health() {
  docker inspect -f '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
    $(docker-compose ps -q)
}
deadline=$((SECONDS + UP_TIMEOUT_S))
while :; do
  waiting=$(health | awk '
    $2 == "exited" && $3 != 0 { print "FAILED " $1; next }
    $2 == "exited" { next }
    $4 != "healthy" { print $1 "(" $2 "/" $4 ")" }')
  [ -z "$waiting" ] && break
  case "$waiting" in *FAILED*) fail "a container failed: $waiting" ;; esac
  [ "$SECONDS" -lt "$deadline" ] || fail "not healthy after ${UP_TIMEOUT_S} s: $waiting"
  sleep 2
done
echo "every container healthy, every job done in $((SECONDS - up_started_s)) s"
# And the gateway's own view: every dependency and every service answers it.
# (200 "degraded" would still serve, but something of the stack does not answer.)
"$PYTHON" - "$URL/ready" <<'PY' || fail "$URL/ready did not answer 200 \"ready\""
import json, sys, time, urllib.error, urllib.request
deadline, answer = time.monotonic() + 60, None
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as reply:
            answer = json.loads(reply.read())
            if answer.get("status") == "ready":
                print(sys.argv[1], reply.status, answer["status"])
                sys.exit(0)
    except (OSError, ValueError, urllib.error.HTTPError) as error:
        answer = error
    time.sleep(1)
print(sys.argv[1], "last answer:", answer, file=sys.stderr)
sys.exit(1)
PY

# --- The bank workload, with one service container killed mid-run ------------------------
step "Bank workload: $CLIENTS clients for $RUN_S s; $VICTIM killed at a third"
victim=$(docker-compose ps -q "$VICTIM" 2>/dev/null) || true
[ -n "$victim" ] || fail "no container runs $VICTIM (COMPOSE_TEST_KILL names a service of the stack)"
restarts_before=$(docker inspect -f '{{.RestartCount}}' "$victim")
"$PYTHON" -m loadtests.bank --url "$URL" --clients "$CLIENTS" --seconds "$RUN_S" --payments 0 &
workload_pid=$!
# The workload opens its accounts first: wait until it transfers, then a third of its run.
sleep $((5 + RUN_S / 3))
victim_pid=$(docker inspect -f '{{.State.Pid}}' "$victim")
echo "kill -9 $VICTIM (pid $victim_pid on this machine): a crash, which Docker restarts"
kill -9 "$victim_pid"
killed_s=$SECONDS
state=""
for _ in $(seq 1 60); do
  sleep 1
  state=$(docker inspect -f '{{.RestartCount}} {{.State.Health.Status}}' "$victim")
  [ "${state% *}" -gt "$restarts_before" ] && [ "${state#* }" = healthy ] && break
done
[ "${state% *}" -gt "$restarts_before" ] || fail "$VICTIM was not restarted"
[ "${state#* }" = healthy ] || fail "$VICTIM is $state after its restart"
echo "$VICTIM restarted by Docker and healthy again $((SECONDS - killed_s)) s after the kill"
wait "$workload_pid" || { workload_pid=; fail "the bank checker found a problem"; }
workload_pid=

step "Reconciliation: books balanced, the Kafka mirror holds every posting"
docker exec "$(docker-compose ps -q ledger)" paysys reconcile \
  || fail "paysys reconcile found the books or the mirror wrong"
