"""The `provision` command: the only place that prints results and chooses exit codes.

Exit codes: 0 success / no changes, 1 error, 2 changes present (with
--detailed-exitcode, drift, render --check).

group.py holds the click group, output.py printing (through redact) and exit
codes, clients.py the broker options, and each commands_*.py one family of
commands, registered on the group when imported here.
"""

from __future__ import annotations

from provisioner.cli import commands_dlq, commands_graph, commands_plan, commands_topology
from provisioner.cli.group import main

__all__ = ["commands_dlq", "commands_graph", "commands_plan", "commands_topology", "main"]
