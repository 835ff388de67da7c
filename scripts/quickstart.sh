#!/usr/bin/env bash
# Install provisioner and run the main job on the seed topology: validate, plan, apply, plan again.
# Needs a RabbitMQ node (installed and started if missing, on Debian) on localhost.
# Set PROVISION_AMQP_URL / PROVISION_MANAGEMENT_URL to point at another broker.
#
# It works in a vhost of its own, `provisioner-quickstart` (PROVISION_QUICKSTART_VHOST to change it),
# never in the vhost the topology names: it applies a copy of the topology with that vhost.
# A topology with a `vhosts:` section names its vhosts itself and is applied as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:-topologies/seed.yaml}
vhost=${PROVISION_QUICKSTART_VHOST:-provisioner-quickstart}

bash scripts/ensure-rabbitmq.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/provision validate "$topology"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy="$work/$(basename "$topology")"
.venv/bin/python - "$topology" "$vhost" "$copy" <<'EOF'
import sys

import yaml

source, vhost, target = sys.argv[1:]
with open(source, encoding="utf-8") as file:
    data = yaml.safe_load(file)
if isinstance(data, dict) and "vhosts" not in data:
    data["vhost"] = vhost
    if isinstance(data.get("celery"), dict) and "vhost" in data["celery"]:
        data["celery"]["vhost"] = vhost
    print(f"quickstart: applying {source} in vhost {vhost!r} (PROVISION_QUICKSTART_VHOST changes it)")
else:
    print(f"quickstart: {source} names its vhosts under 'vhosts:'; applying it as it is")
with open(target, "w", encoding="utf-8") as file:
    yaml.safe_dump(data, file, sort_keys=False, allow_unicode=True)
EOF

set -x
.venv/bin/provision plan "$copy"
.venv/bin/provision apply --yes "$copy"   # --yes: the quick start applies without asking on a terminal
.venv/bin/provision plan --detailed-exitcode "$copy"
