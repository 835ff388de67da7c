#!/usr/bin/env bash
# Run the whole test suite against a real RabbitMQ: the README's test command and what CI runs.
# Installs what is missing (RabbitMQ from Debian's packages, a .venv with the project and its
# test extras), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-rabbitmq.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

exec .venv/bin/python -m pytest "$@"
