#!/usr/bin/env bash
# RabbitMQ 4.0 beside the machine's 3.10: a Debian 13 root filesystem with Debian's rabbitmq-server
# (4.0.5, Erlang 27), built once into a cache folder outside the repository; nodes run in it with chroot.
#
#   bash scripts/rabbitmq4.sh build            # idempotent: builds the root when it is missing (about 1 min)
#   bash scripts/rabbitmq4.sh start NAME [--deny-deprecated]   # prints the node's ports as shell variables
#   bash scripts/rabbitmq4.sh stop NAME        # stops the node and removes its data
#
# The root lives in $PROVISION_RABBITMQ4_ROOT (default /var/cache/provisioner/rabbitmq-4.0-root).
# start/stop are tests/nodes.py's throwaway nodes, so tests and this script share one way to run a node.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=${PROVISION_RABBITMQ4_ROOT:-/var/cache/provisioner/rabbitmq-4.0-root}
export PROVISION_RABBITMQ4_ROOT=$ROOT

say() { echo "rabbitmq4: $*" >&2; }

build() {
  if [ -x "$ROOT/usr/sbin/rabbitmq-server" ]; then
    say "RabbitMQ 4.0 root is ready at $ROOT"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { say "building the RabbitMQ 4.0 root needs root: sudo bash $0 build"; exit 1; }
  mkdir -p "$(dirname "$ROOT")"
  # One build at a time: whoever waits here finds the root ready afterwards.
  exec 9>"$ROOT.lock"
  flock 9
  if [ -x "$ROOT/usr/sbin/rabbitmq-server" ]; then
    say "RabbitMQ 4.0 root is ready at $ROOT"
    return 0
  fi
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    say "installing mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  local partial="$ROOT.partial"
  rm -rf "$partial"
  say "building a Debian 13 root with rabbitmq-server into $ROOT (about a minute)"
  mmdebstrap --quiet --variant=apt --include=rabbitmq-server trixie "$partial"
  # Node names are NAME@localhost: the chroot resolves localhost like the machine does.
  [ -s "$partial/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$partial/etc/hosts"
  mv "$partial" "$ROOT"
  say "RabbitMQ $(chroot "$ROOT" dpkg-query -W -f '${Version}' rabbitmq-server) ready at $ROOT"
}

python() {
  if [ -x .venv/bin/python ]; then .venv/bin/python "$@"; else python3 "$@"; fi
}

case "${1:-}" in
  build) build ;;
  start)
    [ -n "${2:-}" ] || { say "usage: $0 start NAME [--deny-deprecated]"; exit 1; }
    build
    python tests/nodes.py start --installation 4.0 "${@:2}"
    ;;
  stop)
    [ -n "${2:-}" ] || { say "usage: $0 stop NAME"; exit 1; }
    python tests/nodes.py stop "$2"
    ;;
  *)
    say "usage: $0 build | start NAME [--deny-deprecated] | stop NAME"
    exit 1
    ;;
esac
