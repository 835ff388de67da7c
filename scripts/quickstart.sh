#!/usr/bin/env bash
# Install provisioner and run the main job on the seed topology: validate, plan, apply, plan again.
# Needs a RabbitMQ node (installed and started if missing, on Debian) on localhost.
# Set PROVISION_AMQP_URL / PROVISION_MANAGEMENT_URL to point at another broker.
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:-topologies/seed.yaml}

bash scripts/ensure-rabbitmq.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

set -x
.venv/bin/provision validate "$topology"
.venv/bin/provision plan "$topology"
.venv/bin/provision apply "$topology"
.venv/bin/provision plan --detailed-exitcode "$topology"
