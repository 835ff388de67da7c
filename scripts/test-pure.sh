#!/usr/bin/env bash
# The tests that need no broker, run with none reachable: the broker under test is pointed at two
# ports nothing listens on, so a test that should carry the `broker` marker fails instead of passing
# quietly against the machine's node. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
bash scripts/ensure-graph-tools.sh   # Graphviz and chromium, for the graph tests
closed_port() {  # a port the kernel just handed out and took back: nothing listens on it
  .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export PROVISION_TEST_AMQP_PORT
PROVISION_TEST_AMQP_PORT=$(closed_port)
export PROVISION_TEST_MANAGEMENT_URL
PROVISION_TEST_MANAGEMENT_URL="http://127.0.0.1:$(closed_port)"
exec .venv/bin/python -m pytest -m "not broker" -p no:cacheprovider "$@"
