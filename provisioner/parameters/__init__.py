"""Operator policies, federation upstreams, shovels and global parameters: named JSON values the broker keeps.

All four are runtime parameters on the broker, so one small machine serves
them: ``core.py`` (the kind spec, the object, URIs with hidden credentials),
``load.py`` (reading a topology), ``compare.py`` (pure: desired x live ->
changes), ``broker.py`` (reads and writes over the management API). Each kind
is one spec in a module of its own; KINDS lists them.
"""

from __future__ import annotations

from provisioner.parameters.core import ParameterKind
from provisioner.parameters.federation import FEDERATION_UPSTREAM
from provisioner.parameters.global_parameters import GLOBAL_PARAMETER
from provisioner.parameters.operator_policies import OPERATOR_POLICY
from provisioner.parameters.shovels import SHOVEL

KINDS: tuple[ParameterKind, ...] = (OPERATOR_POLICY, FEDERATION_UPSTREAM, SHOVEL, GLOBAL_PARAMETER)
BY_KIND = {kind.kind: kind for kind in KINDS}
# Runtime parameter components that these kinds cover (a definitions export lists operator policies among them too).
COMPONENTS = {kind.component: kind for kind in KINDS if kind.component}
