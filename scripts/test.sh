#!/usr/bin/env bash
# Run the whole test suite against a real RabbitMQ: the README's test command and what CI runs.
# Installs what is missing (RabbitMQ from Debian's packages, a .venv with the project and its
# test extras, the 4.x roots), then runs pytest once per broker. Extra arguments go to pytest.
#
# PROVISION_TEST_BROKER chooses the brokers, space-separated (default: 3.10 4.0 4.3-deny):
#   3.10      the machine's node on localhost (scripts/ensure-rabbitmq.sh)
#   4.0       a throwaway RabbitMQ 4.0.5 node (scripts/rabbitmq4.sh build 4.0 builds its root once)
#   4.3       a throwaway RabbitMQ 4.3.6 node (scripts/rabbitmq4.sh build 4.3)
#   4.0-deny, 4.3-deny  the same with every deprecated feature denied, where 4.x is going
# lint-imports checks the import contracts of pyproject.toml (the layers) first, in about 4 s. The
# first broker runs the whole suite; the others only the tests marked broker (-m broker), since
# the tests that need no broker give the same answer on every leg. Throwaway nodes the tests start
# themselves come from the same installation.
# The first leg also builds the manual (docs/, mkdocs.yml) with `mkdocs build --strict` into a
# temporary directory: a broken link, anchor or page fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

BROKERS=${PROVISION_TEST_BROKER:-3.10 4.0 4.3-deny}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
bash scripts/ensure-graph-tools.sh   # Graphviz and chromium, for the graph tests

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
    4.0 | 4.0-deny | 4.3 | 4.3-deny)
      local version=${broker%-deny} deny=()
      [ "$broker" != "$version" ] && deny=(--deny-deprecated)
      bash scripts/rabbitmq4.sh build "$version"
      node="suite-$$-${broker//./-}"
      local ports
      ports=$(.venv/bin/python tests/nodes.py start "$node" --installation "$version" "${deny[@]}")
      say "broker $broker: $(echo "$ports" | tr '\n' ' ')"
      local status=0
      env $ports PROVISION_TEST_RABBITMQ="$version" \
        PROVISION_TEST_DENY_DEPRECATED=$([ ${#deny[@]} -gt 0 ] && echo 1 || echo 0) \
        .venv/bin/python -m pytest "$@" || status=$?
      stop_node
      return $status
      ;;
    *)
      say "unknown broker '$broker' in PROVISION_TEST_BROKER (3.10, 4.0, 4.0-deny, 4.3, 4.3-deny)"
      return 1
      ;;
  esac
}

build_docs() {  # the manual, strictly, into a directory that is thrown away
  local site status=0
  site=$(mktemp -d)
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site" || status=$?
  rm -rf "$site"
  return $status
}

# The layers first (pyproject.toml's import contracts): a forbidden import fails the run before any test.
started=$SECONDS
.venv/bin/lint-imports --no-logo --no-cache
say "import contracts kept in $((SECONDS - started))s"

first_failure=0
summary=()
only_broker=()  # the first leg runs everything; later legs only what talks to a broker
for broker in $BROKERS; do
  started=$SECONDS
  status=0
  if [ ${#only_broker[@]} -eq 0 ]; then
    docs=0
    build_docs || docs=$?
    summary+=("mkdocs build --strict: $([ $docs -eq 0 ] && echo passed || echo "FAILED (exit $docs)")")
    [ $first_failure -ne 0 ] || first_failure=$docs
  fi
  run_against "$broker" "${only_broker[@]}" "$@" || status=$?
  only_broker=(-m broker)
  summary+=("RabbitMQ $broker: $([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)") in $((SECONDS - started))s")
  [ $first_failure -ne 0 ] || first_failure=$status
done
for line in "${summary[@]}"; do say "$line"; done
exit $first_failure
