#!/usr/bin/env bash
# Make sure a RabbitMQ node with the management plugin answers on localhost (5672 and 15672).
# Installs Debian's rabbitmq-server when it is missing (as root), starts the node when it is down,
# enables the management plugin when it is off. One line when all is already fine.
set -euo pipefail

AMQP_PORT=${RABBITMQ_NODE_PORT:-5672}
MANAGEMENT_URL=${PROVISION_TEST_MANAGEMENT_URL:-http://127.0.0.1:15672}
DEADLINE_SECONDS=${RABBITMQ_WAIT_SECONDS:-90}

say() { echo "ensure-rabbitmq: $*" >&2; }
need_root() {
  say "$1; run as root:"
  say "  $2"
  exit 1
}
amqp_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null; }
management_answers() { curl -fsS -u guest:guest -o /dev/null "$MANAGEMENT_URL/api/overview" 2>/dev/null; }
wait_for() {  # wait_for WHAT COMMAND...
  local what=$1; shift
  local until=$((SECONDS + DEADLINE_SECONDS))
  until "$@"; do
    if [ "$SECONDS" -ge "$until" ]; then
      say "$what did not come up within ${DEADLINE_SECONDS}s (see /var/log/rabbitmq/)"
      exit 1
    fi
    sleep 0.5
  done
}

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || need_root "RabbitMQ is not installed" "apt-get update && apt-get install -y rabbitmq-server curl"
  say "installing rabbitmq-server from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server curl >/dev/null
fi
command -v curl >/dev/null 2>&1 || {
  [ "$(id -u)" -eq 0 ] || need_root "curl is missing" "apt-get install -y curl"
  apt-get install -y -qq curl >/dev/null
}

if ! amqp_answers; then
  [ "$(id -u)" -eq 0 ] || need_root "no RabbitMQ node answers on 127.0.0.1:$AMQP_PORT" "rabbitmq-server -detached"
  say "starting the RabbitMQ node"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "RabbitMQ (AMQP on $AMQP_PORT)" amqp_answers
fi

if ! management_answers; then
  if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
    [ "$(id -u)" -eq 0 ] || need_root "the management plugin is off" "rabbitmq-plugins enable rabbitmq_management"
    say "enabling rabbitmq_management"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
  fi
  wait_for "the management API ($MANAGEMENT_URL)" management_answers
fi

say "RabbitMQ $(curl -fsS -u guest:guest "$MANAGEMENT_URL/api/overview" | sed -n 's/.*"rabbitmq_version":"\([^"]*\)".*/\1/p') is up on 127.0.0.1:$AMQP_PORT, management on $MANAGEMENT_URL"
