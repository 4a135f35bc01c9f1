#!/usr/bin/env bash
# `make deploy-check`: the deployment files are up to date, render, validate and pass checkov.
#   1. the generated files follow shared/catalog.py       python -m deploy.generate --check
#   2. the compose files are valid                        docker-compose config -q (when installed)
#   3. Kustomize renders overlays dev and prod, and infra kubectl kustomize (Debian's
#                                                         kubernetes-client if no kubectl)
#   4. every rendered object is valid Kubernetes          kubernetes-validate --strict, for the
#      oldest and newest Kubernetes it knows here; the operators' custom resources (infra)
#      have no schema there, which it says
#   5. the monitoring files: Prometheus's alert rules   promtool check rules, promtool test
#      (deploy/monitoring/alerts.yml) are valid and fire  rules alerts.test.yml, promtool
#      as their tests say; the scrape config is valid     check config (Debian's prometheus)
#   6. checkov finds nothing: the rendered manifests, every Dockerfile, the compose files
#      (checkov has no compose policies: it looks for secrets in them; tests/unit/
#      test_deploy.py checks what compose security it can). A skipped check carries its
#      reason beside what it skips (checkov.io/skip annotations, checkov:skip comments).
# PYTHON: the project's interpreter (.venv/bin/python); CHECKERS: the bin directory of the
# virtualenv with checkov and kubernetes-validate (.venv-deploy/bin; `make deploy-check`).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  "") ;;
  *) echo "check.sh: no arguments (try --help)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-.venv/bin/python}
CHECKERS=${CHECKERS:-.venv-deploy/bin}
OLDEST_KUBERNETES=1.29.0
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
step() { printf '\n=== %s\n' "$*"; }

step "Generated files"
"$PYTHON" -m deploy.generate --check

step "Compose files"
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q
  docker-compose -f docker-compose.yml -f docker-compose.offline.yml config -q
  echo "docker-compose.yml, and with docker-compose.offline.yml: valid"
else
  echo "docker-compose is not installed: skipped (make compose-test installs it)"
fi

step "Kustomize"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl (Debian's kubernetes-client)"
  apt-get install -y -q kubernetes-client >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q kubernetes-client >/dev/null; }
fi
for target in overlays/dev overlays/prod infra; do
  out="$rendered/$(echo "$target" | tr / -).yaml"
  # Newer kustomize warns that `bases:` is old; the files keep it for Debian's kubectl.
  kubectl kustomize "deploy/k8s/$target" >"$out" 2> >(grep -v "is deprecated" >&2)
  echo "deploy/k8s/$target: $(grep -c '^kind:' "$out") objects"
done

step "kubernetes-validate"
for version in "$OLDEST_KUBERNETES" ""; do
  "$CHECKERS/kubernetes-validate" --strict --quiet ${version:+-k "$version"} \
    "$rendered/overlays-dev.yaml" "$rendered/overlays-prod.yaml"
  echo "overlays dev and prod: valid for Kubernetes ${version:-(newest known)}"
done
"$CHECKERS/kubernetes-validate" --strict --quiet "$rendered/infra.yaml" 2>&1 \
  | sed 's/^WARN [^ ]* /  infra: /'

step "Monitoring (promtool)"
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian's prometheus)"
  apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { apt-get update -q >/dev/null \
         && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
fi
( cd deploy/monitoring
  promtool check rules alerts.yml
  promtool test rules alerts.test.yml
  promtool check config --syntax-only prometheus.yml )

step "checkov"
checkov() {
  # --skip-download: no call home (no platform key, and no network here).
  local output status=0
  output=$("$CHECKERS/checkov" --skip-download --compact --quiet "$@" 2>&1) || status=$?
  # Its banner out; the summary and any failed check stay.
  printf '%s\n' "$output" | grep -v -e '^[[:space:]]*$' -e '^  *[_/|\\(]' -e '^By Prisma Cloud' || true
  return "$status"
}
checkov --framework kubernetes -d "$rendered"
checkov --framework dockerfile -f Dockerfile $(printf -- '-f %s ' deploy/docker/offline/*/Dockerfile)
checkov --framework secrets -f docker-compose.yml -f docker-compose.offline.yml
echo "secrets scan of docker-compose.yml and docker-compose.offline.yml: none found"
echo "checkov: no failed check"
