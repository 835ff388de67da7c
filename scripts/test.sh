#!/usr/bin/env bash
# Run the whole test suite against a real RabbitMQ: the README's test command and what CI runs.
# Installs what is missing (RabbitMQ from Debian's packages, a .venv with the project and its
# test extras), then runs pytest once per broker. Extra arguments go to pytest.
#
# PROVISION_TEST_BROKER chooses the brokers, space-separated, one whole run each (default: all three):
#   3.10      the machine's node on localhost (scripts/ensure-rabbitmq.sh)
#   4.0       a throwaway RabbitMQ 4.0 node (scripts/rabbitmq4.sh builds its root once)
#   4.0-deny  the same with every deprecated feature denied, as later versions default to
# Throwaway nodes the tests start themselves come from the same installation.
set -euo pipefail
cd "$(dirname "$0")/.."

BROKERS=${PROVISION_TEST_BROKER:-3.10 4.0 4.0-deny}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

say() { echo "test.sh: $*" >&2; }
node=""
stop_node() {
  if [ -n "$node" ]; then
    .venv/bin/python tests/nodes.py stop "$node" || true
    node=""
  fi
}
trap stop_node EXIT

run_against() {  # run_against BROKER PYTEST-ARGS...
  local broker=$1; shift
  case "$broker" in
    3.10)
      bash scripts/ensure-rabbitmq.sh
      PROVISION_TEST_RABBITMQ=3.10 .venv/bin/python -m pytest "$@"
      ;;
    4.0 | 4.0-deny)
      local deny=()
      [ "$broker" = 4.0-deny ] && deny=(--deny-deprecated)
      bash scripts/rabbitmq4.sh build
      node="suite-$$-${broker//./-}"
      local ports
      ports=$(.venv/bin/python tests/nodes.py start "$node" --installation 4.0 "${deny[@]}")
      say "broker $broker: $(echo "$ports" | tr '\n' ' ')"
      local status=0
      env $ports PROVISION_TEST_RABBITMQ=4.0 PROVISION_TEST_DENY_DEPRECATED=$([ ${#deny[@]} -gt 0 ] && echo 1 || echo 0) \
        .venv/bin/python -m pytest "$@" || status=$?
      stop_node
      return $status
      ;;
    *)
      say "unknown broker '$broker' in PROVISION_TEST_BROKER (3.10, 4.0, 4.0-deny)"
      return 1
      ;;
  esac
}

first_failure=0
summary=()
for broker in $BROKERS; do
  started=$SECONDS
  status=0
  run_against "$broker" "$@" || status=$?
  summary+=("RabbitMQ $broker: $([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $((SECONDS - started))s")
  [ $first_failure -ne 0 ] || first_failure=$status
done
for line in "${summary[@]}"; do say "$line"; done
exit $first_failure
