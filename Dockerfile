# The image of every paysys service process: `docker run paysys SERVICE`, where SERVICE is
# auth, accounts, transactions, validator_1…N, payments, ledger, notifications or gateway.
# Administration runs the same image with `--entrypoint paysys` (migrate, keys, create-user).
#
# BASE_IMAGE is Debian bookworm from Docker Hub by default; where no registry answers,
# deploy/docker/base-image.sh makes local/debian:bookworm with debootstrap instead
# (docker-compose.offline.yml builds from it). Both stages take Python from Debian, so the
# virtualenv built in the first runs unchanged in the second.
# checkov:skip=CKV_DOCKER_7: every FROM names ${BASE_IMAGE}, whose default is a fixed tag
# (debian:bookworm-slim); checkov does not resolve build arguments.
ARG BASE_IMAGE=debian:bookworm-slim

# --- build: a virtualenv with paysys and its pinned dependencies (all wheels, no compiler)
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Where an egress proxy re-signs TLS, pip must trust its CA: EXTRA_CA_CERTS holds those
# PEM certificates (make compose-test passes the build machine's local CAs). Only this
# stage sees them; the runtime image keeps Debian's bundle alone.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates >/dev/null; \
    fi
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/paysys
WORKDIR /src

# The dependencies first, from setup.cfg alone, so a change of code does not fetch them again.
COPY setup.cfg pyproject.toml ./
RUN python3 -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print(c['options']['install_requires'].strip())" > requirements.txt \
    && /opt/paysys/bin/pip install --quiet -r requirements.txt

# Then paysys itself, as a wheel: no editable install, no tests, no supervisor, no broker
# (the `local` extra of `make up` is not installed). Migrations travel as package data.
COPY README.md ./
COPY shared shared
COPY services services
COPY gateway gateway
COPY paysys paysys
COPY paysys_mirror paysys_mirror
RUN /opt/paysys/bin/pip install --quiet --no-deps . \
    && /opt/paysys/bin/pip uninstall --quiet --yes pip

# --- runtime: Python, the virtualenv, the configuration (and CAs for HTTPS webhooks)
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="paysys" \
      org.opencontainers.image.description="A paysys service process: docker run paysys SERVICE"
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 paysys \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin paysys
COPY --from=build /opt/paysys /opt/paysys
COPY config.yml /etc/paysys/config.yml

# Everything a process writes goes to /tmp (a tmpfs where the root filesystem is
# read-only): its heartbeat, and the run dir nothing else uses in a container.
ENV PATH=/opt/paysys/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAYSYS_CONFIG=/etc/paysys/config.yml \
    PAYSYS_RUN_DIR=/tmp/paysys \
    PAYSYS_HEARTBEAT_FILE=/tmp/paysys/heartbeat.json \
    PAYSYS_GATEWAY_ADDRESS=0.0.0.0:8000 \
    PAYSYS_METRICS_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000

# Asks this container's own process (its heartbeat, GET /livez on its metrics port, and
# the gateway's /health): see paysys/heartbeat.py. It fails while RabbitMQ is away; `paysys health --live` does not.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["paysys", "health"]
ENTRYPOINT ["paysys", "serve"]
