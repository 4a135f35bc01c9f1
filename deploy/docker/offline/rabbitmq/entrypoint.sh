#!/bin/sh
# The user the stack connects as, allowed from other hosts (guest is loopback-only).
set -eu
cat >"$RABBITMQ_CONFIG_FILE" <<CONF
loopback_users = none
listeners.tcp.default = 5672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
CONF
chmod 0600 "$RABBITMQ_CONFIG_FILE"
exec "$@"
