#!/usr/bin/env bash
# RabbitMQ 4.x beside the machine's 3.10: a Debian root filesystem with Debian's rabbitmq-server, built once
# into a cache folder outside the repository; nodes run in it with chroot.
#   4.0   Debian 13 (trixie): RabbitMQ 4.0.5, Erlang 27
#   4.3   Debian unstable (sid): RabbitMQ 4.3.6, Erlang 29
#
#   bash scripts/rabbitmq4.sh build [VERSION]   # idempotent: builds the root when it is missing (about 1-2 min)
#   bash scripts/rabbitmq4.sh start NAME [--version VERSION] [--deny-deprecated]   # prints the node's ports
#   bash scripts/rabbitmq4.sh stop NAME         # stops the node and removes its data
#
# VERSION is 4.0 (the default) or 4.3. The roots live in $PROVISION_RABBITMQ4_ROOT (default
# /var/cache/provisioner/rabbitmq-4.0-root) and $PROVISION_RABBITMQ43_ROOT (.../rabbitmq-4.3-root).
# Both come from the machine's own Debian mirror, which serves a frozen snapshot: its Release files are past
# their Valid-Until date, so apt is told not to check it.
# start/stop are tests/nodes.py's throwaway nodes, so tests and this script share one way to run a node.
set -euo pipefail
cd "$(dirname "$0")/.."

export PROVISION_RABBITMQ4_ROOT=${PROVISION_RABBITMQ4_ROOT:-/var/cache/provisioner/rabbitmq-4.0-root}
export PROVISION_RABBITMQ43_ROOT=${PROVISION_RABBITMQ43_ROOT:-/var/cache/provisioner/rabbitmq-4.3-root}

say() { echo "rabbitmq4: $*" >&2; }

root_of() {  # root_of VERSION: the cache folder of that version's root
  case "$1" in
    4.0) echo "$PROVISION_RABBITMQ4_ROOT" ;;
    4.3) echo "$PROVISION_RABBITMQ43_ROOT" ;;
    *) say "unknown RabbitMQ version '$1' (4.0 or 4.3)"; exit 1 ;;
  esac
}

suite_of() {  # suite_of VERSION: the Debian suite that ships it
  case "$1" in
    4.0) echo trixie ;;
    4.3) echo sid ;;
  esac
}

build() {  # build VERSION
  local version=$1 root suite
  root=$(root_of "$version")
  suite=$(suite_of "$version")
  if [ -x "$root/usr/sbin/rabbitmq-server" ]; then
    say "RabbitMQ $version root is ready at $root"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { say "building the RabbitMQ $version root needs root: sudo bash $0 build $version"; exit 1; }
  mkdir -p "$(dirname "$root")"
  # One build at a time: whoever waits here finds the root ready afterwards.
  exec 9>"$root.lock"
  flock 9
  if [ -x "$root/usr/sbin/rabbitmq-server" ]; then
    say "RabbitMQ $version root is ready at $root"
    return 0
  fi
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    say "installing mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  local partial="$root.partial"
  rm -rf "$partial"
  say "building a Debian $suite root with rabbitmq-server into $root (a minute or two)"
  mmdebstrap --quiet --variant=apt --include=rabbitmq-server \
    --aptopt='Acquire::Check-Valid-Until "false"' "$suite" "$partial"
  # Node names are NAME@localhost: the chroot resolves localhost like the machine does.
  [ -s "$partial/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$partial/etc/hosts"
  mv "$partial" "$root"
  say "RabbitMQ $(chroot "$root" dpkg-query -W -f '${Version}' rabbitmq-server) ready at $root"
}

python() {
  if [ -x .venv/bin/python ]; then .venv/bin/python "$@"; else python3 "$@"; fi
}

case "${1:-}" in
  build) build "${2:-4.0}" ;;
  start)
    [ -n "${2:-}" ] || { say "usage: $0 start NAME [--version 4.0|4.3] [--deny-deprecated]"; exit 1; }
    name=$2
    version=4.0
    rest=()
    shift 2
    while [ $# -gt 0 ]; do
      case "$1" in
        --version) version=${2:?--version needs 4.0 or 4.3}; shift 2 ;;
        *) rest+=("$1"); shift ;;
      esac
    done
    build "$version"
    python tests/nodes.py start "$name" --installation "$version" "${rest[@]}"
    ;;
  stop)
    [ -n "${2:-}" ] || { say "usage: $0 stop NAME"; exit 1; }
    python tests/nodes.py stop "$2"
    ;;
  *)
    say "usage: $0 build [4.0|4.3] | start NAME [--version 4.0|4.3] [--deny-deprecated] | stop NAME"
    exit 1
    ;;
esac
