"""Writes the deployment files that follow the list of services (shared/catalog.py).

    python -m deploy.generate           write them (what `make deploy-generate` runs)
    python -m deploy.generate --check   exit 1, naming them, if any is out of date

docker-compose.yml and docker-compose.offline.yml (deploy/compose.py),
deploy/k8s/base/processes.yaml and deploy/k8s/overlays/prod/autoscaling.yaml (deploy/k8s.py),
deploy/monitoring/prometheus.yml and deploy/monitoring/dashboard.json (deploy/monitoring.py).
"""
import argparse
import sys
from pathlib import Path

from deploy import compose, k8s, monitoring

ROOT = Path(__file__).resolve().parent.parent


def outputs():
    """``{path relative to the repository: its text}``."""
    return {
        "docker-compose.yml": compose.render_compose(),
        "docker-compose.offline.yml": compose.render_offline(),
        "deploy/k8s/base/processes.yaml": k8s.render(),
        "deploy/k8s/overlays/prod/autoscaling.yaml": k8s.render_prod_autoscaling(),
        "deploy/monitoring/prometheus.yml": monitoring.render_prometheus(),
        "deploy/monitoring/dashboard.json": monitoring.render_dashboard(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m deploy.generate",
        description="Write the compose files and the Kubernetes Deployments for the "
        "services of shared/catalog.py (and config.yml's default validator pool).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file differs from what it would be")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in outputs().items():
        path = ROOT / relative
        if path.exists() and path.read_text() == text:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check:
        if stale:
            print("out of date (run `make deploy-generate`): " + ", ".join(stale),
                  file=sys.stderr)
            return 1
        print("deployment files up to date")
        return 0
    print("wrote " + ", ".join(stale) if stale else "nothing to write: all up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
